// The server's errors are matched by clients on their exact text and code (clientv3's rpctypes).
import t from 'tap';
import { errNoLeader, errNoSpace, errRequestTooLarge, errTimeout, errTooManyRequests, ServerError } from '../src/index.js';

t.test('etcd codes and messages', async (t) => {
  const table: Array<[ServerError, string, string]> = [
    [errNoLeader(), 'UNAVAILABLE', 'etcdserver: no leader'],
    [errTimeout(), 'UNAVAILABLE', 'etcdserver: request timed out'],
    [errTooManyRequests(), 'RESOURCE_EXHAUSTED', 'etcdserver: too many requests'],
    [errNoSpace(), 'RESOURCE_EXHAUSTED', 'etcdserver: mvcc: database space exceeded'],
    [errRequestTooLarge(), 'INVALID_ARGUMENT', 'etcdserver: request is too large'],
  ];
  for (const [e, code, message] of table) {
    t.type(e, ServerError);
    t.same([e.code, e.message], [code, message]);
  }
  t.not(errNoLeader(), errNoLeader(), 'a fresh error each time (stacks are per call)');
});
