import t from 'tap';
import { MEMBER_GLIBC_TUNABLE, memberTunables, setsMallocHugePages } from '../src/memberenv.js';

t.test('memberTunables adds malloc huge pages to what a member inherits', async (t) => {
  t.equal(memberTunables(undefined), 'glibc.malloc.hugetlb=1');
  t.equal(memberTunables(''), MEMBER_GLIBC_TUNABLE);
  t.equal(memberTunables('glibc.malloc.arena_max=2'), 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1', 'appended to other tunables');
  t.equal(memberTunables('glibc.malloc.hugetlb=0'), 'glibc.malloc.hugetlb=0', 'a value given wins');
  t.equal(memberTunables('glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2'), 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2');
  t.equal(memberTunables('glibc.malloc.hugetlbx=1'), 'glibc.malloc.hugetlbx=1:glibc.malloc.hugetlb=1', 'a longer name is another tunable');
});

t.test('setsMallocHugePages reads the tunable by name', async (t) => {
  t.notOk(setsMallocHugePages(undefined));
  t.notOk(setsMallocHugePages('glibc.malloc.arena_max=2'));
  t.ok(setsMallocHugePages('glibc.malloc.hugetlb=0'));
  t.ok(setsMallocHugePages('glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'));
  t.ok(setsMallocHugePages('glibc.malloc.hugetlb'), 'a name without a value still names it');
});
