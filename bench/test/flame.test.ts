// Flame graphs from V8 CPU profiles: folding the call tree by time, the SVG, and drawing a real
// process's profile from a results folder.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  drawFlames,
  FLAME_WIDTH_PX,
  foldProfile,
  frameKind,
  frameName,
  IDLE_FRAME,
  profileOwner,
  renderFlameSvg,
  shortUrl,
  topSelf,
  type CpuProfile,
} from '../src/flame.js';

type ProfileNode = CpuProfile['nodes'][number];

function node(id: number, functionName: string, url: string, children: number[] = [], lineNumber = 9): ProfileNode {
  return { id, callFrame: { functionName, url, lineNumber }, ...(children.length > 0 ? { children } : {}) };
}

const SERVER = 'file:///repo/packages/server/dist/src/member.js';
const LEVEL = 'file:///repo/node_modules/classic-level/index.js';

/**
 * root: (idle), (program), (garbage collector), main -> [apply -> encode, apply (another call
 * site, merged), lvl]. Samples each stand for the time to the next one.
 */
function profile(): CpuProfile {
  return {
    nodes: [
      node(1, '(root)', '', [2, 3, 4, 5]),
      node(2, IDLE_FRAME, ''),
      node(3, '(program)', ''),
      node(4, '(garbage collector)', ''),
      node(5, 'main', SERVER, [6, 7, 9], 0),
      node(6, 'apply', SERVER, [8], 41),
      node(7, 'apply', SERVER, [], 41),
      node(8, 'encode', 'node:internal/buffer'),
      node(9, 'put', LEVEL),
    ],
    startTime: 1_000,
    endTime: 2_000,
    // At 1000: main; 1100: apply(6); 1300: encode; 1400: apply(7); 1500: idle (400 us); 1900: GC; 1950: program.
    samples: [5, 6, 8, 7, 2, 4, 3],
    timeDeltas: [0, 100, 200, 100, 100, 400, 50],
  };
}

t.test('shortUrl, frameKind, frameName: where a frame is, briefly', async (t) => {
  t.equal(shortUrl(SERVER), 'server/member.js', "a workspace package's compiled file");
  t.equal(shortUrl('file:///repo/packages/mvcc/dist/watch.js'), 'mvcc/watch.js');
  t.equal(shortUrl(LEVEL), 'classic-level/index.js', 'a dependency');
  t.equal(shortUrl('node:internal/streams/writable'), 'node:internal/streams/writable');
  t.equal(frameKind(''), 'native');
  t.equal(frameKind('node:events'), 'node');
  t.equal(frameKind(LEVEL), 'dependency');
  t.equal(frameKind(SERVER), 'workspace');
  t.equal(frameName({ functionName: '', url: SERVER, lineNumber: 0 }), '(anonymous) server/member.js:1', 'lines 1-based');
  t.equal(frameName({ functionName: 'writeBuffer', url: '', lineNumber: -1 }), 'writeBuffer', 'native: no place');
});

t.test('foldProfile: time per stack, idle left out, same-named siblings merged', async (t) => {
  const root = foldProfile(profile());
  t.equal(root.total, 600, 'busy time: everything but the 400 us idle');
  t.notOk(root.children.has(IDLE_FRAME));
  t.equal(root.children.get('(garbage collector)')?.total, 50);
  t.equal(root.children.get('(program)')?.total, 50, 'the last sample runs to endTime');
  const main = root.children.get('main server/member.js:1')!;
  t.equal(main.self, 100);
  t.equal(main.total, 500);
  const apply = main.children.get('apply server/member.js:42')!;
  t.equal(apply.self, 300, 'both call sites of apply, in one box');
  t.equal(apply.total, 400);
  t.equal(apply.children.get('encode node:internal/buffer:10')?.kind, 'node');
  t.equal(main.children.get('put classic-level/index.js:10')?.total, 0, 'a frame without samples is kept with no time');
});

t.test('foldProfile: without samples, hitCount spread over the profile', async (t) => {
  const p = profile();
  delete p.samples;
  delete p.timeDeltas;
  p.nodes[4]!.hitCount = 1; // main
  p.nodes[5]!.hitCount = 3; // apply
  const root = foldProfile(p);
  t.equal(root.children.get('main server/member.js:1')?.total, 1000, '4 hits over 1000 us, all busy');
  t.equal(root.children.get('main server/member.js:1')?.children.get('apply server/member.js:42')?.self, 750);
});

t.test('topSelf: own time summed over every stack, largest first, as a share of busy time', async (t) => {
  const top = topSelf(foldProfile(profile()), 3);
  t.same(
    top.map((x) => x.name),
    ['apply server/member.js:42', 'encode node:internal/buffer:10', 'main server/member.js:1'],
  );
  t.equal(top[0]!.selfUs, 300);
  t.equal(top[0]!.share, 0.5);
});

t.test('renderFlameSvg: widths in proportion to time, labels that fit, escaped, no script', async (t) => {
  const root = foldProfile(profile());
  const svg = renderFlameSvg(root, 'm0 <leader>', 'busy & more');
  t.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  t.match(svg, /m0 &lt;leader&gt;/, 'the title escaped');
  t.match(svg, /busy &amp; more/);
  t.notMatch(svg, /<script/i);
  const width = (name: string): number => {
    const m = new RegExp(`<title>${name.replace(/[()]/g, '\\$&')}: [^<]*</title><rect [^>]*width="([\\d.]+)"`).exec(svg);
    if (m === null) throw new Error(`no box for ${name}`);
    return Number(m[1]);
  };
  t.equal(width('all'), FLAME_WIDTH_PX);
  t.equal(width('main server/member.js:1'), (FLAME_WIDTH_PX * 500) / 600);
  t.equal(width('apply server/member.js:42'), (FLAME_WIDTH_PX * 400) / 600);
  t.match(svg, /<title>apply server\/member.js:42: 0.4 ms \(66.67%\), itself 0.3 ms<\/title>/, 'the tooltip has the time and share');
  t.notMatch(svg, /<title>put classic-level/, 'a box with no time is not drawn');
  // A label is cut to its box: the GC box is 100 px wide, room for about 14 characters.
  t.match(svg, />\(garbage col\.\.</);
});

t.test('renderFlameSvg: a frame too narrow to see is left out, its time stays in its caller', async (t) => {
  const p = profile();
  p.nodes.push(node(10, 'tiny', SERVER));
  p.nodes[4]!.children!.push(10);
  p.samples!.push(10);
  p.timeDeltas!.push(50);
  p.endTime = 2_000.1; // tiny runs for 0.1 us of ~650
  const svg = renderFlameSvg(foldProfile(p), 't', 's');
  t.notMatch(svg, /<title>tiny/);
  t.match(svg, /<title>main server\/member.js:1: /);
});

t.test('profileOwner: the process and thread in the file name V8 gives a profile', async (t) => {
  t.same(profileOwner('/r/prof/CPU.20261205.070502.7706.0.001.cpuprofile'), { pid: 7706, thread: 0 });
  t.same(profileOwner('CPU.20261205.070502.7706.3.002.cpuprofile'), { pid: 7706, thread: 3 });
  t.equal(profileOwner('m0.cpuprofile'), undefined);
});

t.test('drawFlames: a flame graph beside each profile, named for its member; an unreadable one skipped', async (t) => {
  const dir = t.testdir();
  const prof = join(dir, 'prof');
  mkdirSync(prof);
  // A real process under --cpu-prof, busy in a function of its own for a while.
  const child = spawn(
    process.execPath,
    ['--cpu-prof', `--cpu-prof-dir=${prof}`, '-e', 'function spinHere(){let x=0;const end=Date.now()+300;while(Date.now()<end)x+=Math.sqrt(x+1);return x}spinHere()'],
    { stdio: 'ignore' },
  );
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.equal(code, 0);
  writeFileSync(join(prof, 'CPU.20261205.070502.1.0.001.cpuprofile'), '{"nodes": tru');
  const own = readdirSync(prof).find((f) => f.includes(`.${child.pid}.0.`));
  t.ok(own, 'the child wrote its profile');
  // The same profile as if a worker thread of that member had written it.
  writeFileSync(join(prof, `CPU.20261205.070502.${child.pid}.7.009.cpuprofile`), readFileSync(join(prof, own!)));
  const { drawn, skipped } = drawFlames(dir, 'prof', 'test', [
    { name: 'm1', pid: 999_999, leader: false },
    { name: 'm0', pid: child.pid, leader: true },
  ]);
  t.equal(skipped.length, 1);
  t.match(skipped[0], /^CPU\.20261205\.070502\.1\.0\.001\.cpuprofile: /);
  // Under the test runner, whose hooks follow child processes, the child has a loader thread that
  // writes a profile too (m0-thread1).
  t.equal(drawn[0]?.member, 'm0', 'the main thread first');
  t.ok(
    drawn.some((d) => d.member === 'm0-thread7'),
    'a worker thread named for its member and thread',
  );
  const d = drawn[0]!;
  t.equal(d.member, 'm0');
  t.equal(d.pid, child.pid);
  t.equal(d.leader, true);
  t.equal(d.flame, join('prof', 'm0.flame.svg'));
  t.ok(d.busyMs >= 200 && d.busyMs <= d.profiledMs, `busy ${d.busyMs} ms of ${d.profiledMs}`);
  t.ok(existsSync(join(dir, d.profile)));
  const svg = readFileSync(join(dir, d.flame), 'utf8');
  t.match(svg, /test m0 \(leader at start\), pid \d+: CPU profile/);
  t.match(svg, /<title>spinHere \[eval\]:1: /, "the busy function's box");
  t.ok(d.top.some((x) => x.name.startsWith('spinHere')), 'among the top functions');
  t.same(
    readdirSync(prof).filter((f) => f.endsWith('.svg')).sort(),
    drawn.map((x) => `${x.member}.flame.svg`).sort(),
    'one flame graph per profile drawn',
  );
});

t.test('drawFlames: no profile folder is a reason, not a throw', async (t) => {
  const { drawn, skipped } = drawFlames(t.testdir(), 'prof', 'test', []);
  t.same(drawn, []);
  t.equal(skipped.length, 1);
});
