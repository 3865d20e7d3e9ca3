import t from 'tap';
import {
  ConfChangeDecodeError,
  ConfChangeType,
  decodeConfChange,
  encodeConfChange,
  validateConfChange,
} from '../src/index.js';
import { applyToConfState } from '../src/confchange.js';

t.test('encode/decode round trip, with and without context', async (t) => {
  const a = { type: ConfChangeType.AddLearnerNode, nodeId: 2 ** 52 + 7 };
  t.same(decodeConfChange(encodeConfChange(a)), a);
  const ctx = new TextEncoder().encode('{"peerURLs":["http://127.0.0.1:2380"]}');
  const b = decodeConfChange(encodeConfChange({ type: ConfChangeType.AddNode, nodeId: 5, context: ctx }));
  t.same(b.context, ctx);
});

t.test('malformed conf changes are typed errors', async (t) => {
  t.throws(() => decodeConfChange(new Uint8Array(3)), ConfChangeDecodeError);
  const bad = encodeConfChange({ type: ConfChangeType.AddNode, nodeId: 1 });
  bad[1] = 99;
  t.throws(() => decodeConfChange(bad), ConfChangeDecodeError);
  const zero = encodeConfChange({ type: ConfChangeType.AddNode, nodeId: 1 });
  new DataView(zero.buffer).setFloat64(2, 0);
  t.throws(() => decodeConfChange(zero), ConfChangeDecodeError);
});

t.test('validation and application', async (t) => {
  const cs = { voters: [1, 2, 3], learners: [4] };
  t.match(validateConfChange(cs, { type: ConfChangeType.AddNode, nodeId: 2 }), /already a voter/);
  t.equal(validateConfChange(cs, { type: ConfChangeType.AddNode, nodeId: 4 }), undefined, 'promoting a learner');
  t.match(validateConfChange(cs, { type: ConfChangeType.AddLearnerNode, nodeId: 1 }), /cannot be demoted/);
  t.match(validateConfChange(cs, { type: ConfChangeType.RemoveNode, nodeId: 9 }), /not a member/);
  t.match(validateConfChange({ voters: [1], learners: [] }, { type: ConfChangeType.RemoveNode, nodeId: 1 }), /last voter/);
  t.same(applyToConfState(cs, { type: ConfChangeType.AddNode, nodeId: 4 }), { voters: [1, 2, 3, 4], learners: [] });
  t.same(applyToConfState(cs, { type: ConfChangeType.RemoveNode, nodeId: 2 }), { voters: [1, 3], learners: [4] });
  t.same(applyToConfState(cs, { type: ConfChangeType.RemoveNode, nodeId: 9 }), cs, 'invalid changes change nothing');
});
