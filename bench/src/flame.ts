/**
 * Flame graphs of the members' CPU profiles (`--cpu-prof`). V8 writes a `.cpuprofile` per
 * process: a call tree and a list of samples, each the tree node that was running, with the time
 * since the sample before. This module folds that into a tree of stacks weighted by time, and
 * draws it as a flame graph (Brendan Gregg's layout: the root at the bottom, a callee on top of
 * its caller, widths in proportion to time, order by name, not by time). The SVG is static, with
 * no script, so it opens anywhere, as report.html does; each box's tooltip has the frame, its time
 * and its share.
 *
 * Time the thread spent waiting (V8's `(idle)` node) is left out: a member at 100 puts/s is idle
 * most of the time, and a graph of that would show nothing. `(program)` (V8 and Node's native
 * work outside JavaScript) and `(garbage collector)` stay, since they are the process's CPU too.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { esc } from './common.js';

/** The parts of V8's `.cpuprofile` (the inspector's Profiler.Profile) this module reads. */
export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber?: number };
    hitCount?: number;
    children?: number[];
  }[];
  startTime: number;
  endTime: number;
  /** The node running at each sample. */
  samples?: number[];
  /** Microseconds from the sample before (from startTime for the first). */
  timeDeltas?: number[];
}

/** A frame and everything called from it, with time in microseconds. */
export interface FlameNode {
  readonly name: string;
  readonly kind: FrameKind;
  /** Time in this frame itself, not in what it called. */
  self: number;
  /** self plus the children's totals. */
  total: number;
  readonly children: Map<string, FlameNode>;
}

/** Where a frame's code lives: this repository's packages, a dependency, Node itself, or V8/native (no script). */
export type FrameKind = 'workspace' | 'dependency' | 'node' | 'native';

/** The results folder's subfolder where Capstan members write their profiles, and the flame graphs go. */
export const PROFILE_DIR = 'prof';

/** V8's pseudo-frame for time the thread waited: left out of the graph (see the module comment). */
export const IDLE_FRAME = '(idle)';

/** Graph width. A box narrower than MIN_BOX_PX is left out (its time stays in its caller's box). */
export const FLAME_WIDTH_PX = 1200;
export const FRAME_HEIGHT_PX = 16;
export const MIN_BOX_PX = 0.3;
const FONT_PX = 11;
/** Width of one character of the monospace label font at FONT_PX, for fitting labels into boxes. */
const CHAR_PX = 6.6;
const HEADER_PX = 44;
/** Functions listed by self time, per profile, in the report and results.json. */
export const TOP_FUNCTIONS = 10;

/**
 * A script's URL, shortened to what identifies it here: a workspace package's compiled file as
 * `package/file.js`, a dependency's as `dependency/file.js`, Node's own as they are (`node:...`).
 */
export function shortUrl(url: string): string {
  const path = url.replace(/^file:\/\//, '');
  const dep = path.lastIndexOf('/node_modules/');
  if (dep >= 0) return path.slice(dep + '/node_modules/'.length);
  const pkg = path.lastIndexOf('/packages/');
  if (pkg >= 0) return path.slice(pkg + '/packages/'.length).replace(/\/dist\/(src\/)?/, '/');
  return path;
}

export function frameKind(url: string): FrameKind {
  if (url === '') return 'native';
  if (url.startsWith('node:')) return 'node';
  return url.includes('/node_modules/') ? 'dependency' : 'workspace';
}

/** A frame's label: function, and where it is (1-based line) when it is in a script. */
export function frameName(cf: CpuProfile['nodes'][number]['callFrame']): string {
  const fn = cf.functionName === '' ? '(anonymous)' : cf.functionName;
  return cf.url === '' ? fn : `${fn} ${shortUrl(cf.url)}:${cf.lineNumber + 1}`;
}

/**
 * Microseconds of each node's own time. A sample stands for the time until the next one (the last
 * until endTime), as Chrome DevTools counts it. A profile without samples (older writers) falls
 * back to hitCount times the mean interval.
 */
function selfTimes(p: CpuProfile): Map<number, number> {
  const self = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  if (samples.length > 0 && deltas.length === samples.length) {
    let t = p.startTime;
    const at = deltas.map((d) => (t += d));
    for (let i = 0; i < samples.length; i++) {
      const next = i + 1 < samples.length ? at[i + 1]! : Math.max(p.endTime, at[i]!);
      self.set(samples[i]!, (self.get(samples[i]!) ?? 0) + Math.max(0, next - at[i]!));
    }
    return self;
  }
  const hits = p.nodes.reduce((n, x) => n + (x.hitCount ?? 0), 0);
  const interval = hits === 0 ? 0 : (p.endTime - p.startTime) / hits;
  for (const n of p.nodes) if (n.hitCount) self.set(n.id, n.hitCount * interval);
  return self;
}

function newNode(name: string, kind: FrameKind): FlameNode {
  return { name, kind, self: 0, total: 0, children: new Map() };
}

/**
 * The profile as a tree of frames with times. V8's tree has a node per call site; siblings with
 * the same label (the same function called from two places in one caller) are merged, as a flame
 * graph shows a stack once. The root is named `all` and holds the busy time.
 */
export function foldProfile(p: CpuProfile): FlameNode {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = selfTimes(p);
  const root = newNode('all', 'native');
  const childIds = new Set(p.nodes.flatMap((n) => n.children ?? []));
  const top = p.nodes.find((n) => !childIds.has(n.id));
  if (top === undefined) return root;
  // Iterative: an async stack can be deeper than the JS call stack of this process allows.
  const stack: { id: number; into: FlameNode }[] = (top.children ?? []).map((id) => ({ id, into: root }));
  while (stack.length > 0) {
    const { id, into } = stack.pop()!;
    const n = byId.get(id);
    if (n === undefined) continue;
    const name = frameName(n.callFrame);
    if (into === root && name === IDLE_FRAME) continue;
    let f = into.children.get(name);
    if (f === undefined) into.children.set(name, (f = newNode(name, frameKind(n.callFrame.url))));
    f.self += self.get(id) ?? 0;
    for (const c of n.children ?? []) stack.push({ id: c, into: f });
  }
  root.self = self.get(top.id) ?? 0;
  sumTotals(root);
  return root;
}

function sumTotals(root: FlameNode): void {
  // Post-order without recursion, for the same reason as foldProfile.
  const order: FlameNode[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const n = stack.pop()!;
    order.push(n);
    for (const c of n.children.values()) stack.push(c);
  }
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i]!;
    n.total = n.self;
    for (const c of n.children.values()) n.total += c.total;
  }
}

/** Functions by their own time summed over every stack they appear in, largest first. */
export function topSelf(root: FlameNode, n: number = TOP_FUNCTIONS): { name: string; selfUs: number; share: number }[] {
  const by = new Map<string, number>();
  const stack = [...root.children.values()];
  while (stack.length > 0) {
    const f = stack.pop()!;
    if (f.self > 0) by.set(f.name, (by.get(f.name) ?? 0) + f.self);
    for (const c of f.children.values()) stack.push(c);
  }
  return [...by.entries()]
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, n)
    .map(([name, selfUs]) => ({ name, selfUs, share: root.total === 0 ? 0 : selfUs / root.total }));
}

/** Hues by where the code lives, so the workspace's own code stands out. */
const PALETTE: Record<FrameKind, (v: number) => string> = {
  workspace: (v) => `rgb(${225 + (v % 30)},${80 + 2 * v},${40 + (v % 30)})`, // red-orange
  dependency: (v) => `rgb(${70 + v},${170 + (v % 50)},${150 + (v % 40)})`, // teal
  node: (v) => `rgb(${200 + (v % 55)},${190 + (v % 40)},${60 + v})`, // yellow
  native: (v) => `rgb(${160 + (v % 40)},${160 + (v % 40)},${190 + (v % 50)})`, // grey-blue
};

/** A stable colour per frame: its kind's hue, varied by a hash of its name. */
function colour(node: FlameNode): string {
  let h = 0;
  for (let i = 0; i < node.name.length; i++) h = (h * 31 + node.name.charCodeAt(i)) >>> 0;
  return PALETTE[node.kind](h % 55);
}

/** Fits a label into a box of `px` pixels (cut, with ".."), or nothing when fewer than three characters fit. */
function fit(label: string, px: number): string {
  const chars = Math.floor((px - 6) / CHAR_PX);
  if (chars < 3) return '';
  return label.length <= chars ? label : `${label.slice(0, chars - 2)}..`;
}

/** Microseconds as milliseconds, for a label. */
function usAsMs(us: number): string {
  return us >= 10_000 ? `${(us / 1000).toFixed(0)} ms` : `${(us / 1000).toFixed(1)} ms`;
}

/** The flame graph as a standalone SVG document. */
export function renderFlameSvg(root: FlameNode, title: string, subtitle: string): string {
  const scale = root.total === 0 ? 0 : FLAME_WIDTH_PX / root.total;
  const boxes: { node: FlameNode; x: number; depth: number }[] = [];
  let maxDepth = 0;
  const stack: { node: FlameNode; x: number; depth: number }[] = [{ node: root, x: 0, depth: 0 }];
  while (stack.length > 0) {
    const b = stack.pop()!;
    boxes.push(b);
    maxDepth = Math.max(maxDepth, b.depth);
    let x = b.x;
    for (const c of [...b.node.children.values()].sort((a, z) => (a.name < z.name ? -1 : a.name > z.name ? 1 : 0))) {
      if (c.total * scale >= MIN_BOX_PX) stack.push({ node: c, x, depth: b.depth + 1 });
      x += c.total * scale;
    }
  }
  const height = HEADER_PX + (maxDepth + 1) * FRAME_HEIGHT_PX + 4;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${FLAME_WIDTH_PX}" height="${height}" viewBox="0 0 ${FLAME_WIDTH_PX} ${height}" font-family="monospace" font-size="${FONT_PX}">`,
    `<rect width="100%" height="100%" fill="#fdfdf6"/>`,
    `<text x="${FLAME_WIDTH_PX / 2}" y="18" text-anchor="middle" font-size="15">${esc(title)}</text>`,
    `<text x="${FLAME_WIDTH_PX / 2}" y="34" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`,
  ];
  for (const { node, x, depth } of boxes) {
    const w = node.total * scale;
    const y = height - 4 - (depth + 1) * FRAME_HEIGHT_PX;
    const share = root.total === 0 ? 0 : (100 * node.total) / root.total;
    const tip = `${node.name}: ${usAsMs(node.total)} (${share.toFixed(2)}%), itself ${usAsMs(node.self)}`;
    const label = fit(node.name, w);
    out.push(
      `<g><title>${esc(tip)}</title><rect x="${x.toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="${FRAME_HEIGHT_PX - 1}" fill="${node === root ? '#c8c8c8' : colour(node)}" rx="1"/>` +
        (label === '' ? '' : `<text x="${(x + 3).toFixed(2)}" y="${y + FRAME_HEIGHT_PX - 4}">${esc(label)}</text>`) +
        '</g>',
    );
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** The share of the profiled time a member was busy ("47%"), or undefined for an empty profile. */
export function busyShare(busyMs: number, profiledMs: number): string | undefined {
  return profiledMs > 0 ? `${((100 * busyMs) / profiledMs).toFixed(0)}%` : undefined;
}

/** A member as the graphs and lists name it: m0, with "(leader at start)" when it led. */
export function memberTitle(member: string, leader: boolean): string {
  return `${member}${leader ? ' (leader at start)' : ''}`;
}

/** One member's profile, as the report and results.json list it. */
export interface ProfileSummary {
  /** The member (m0, m1, ...) when its pid is known, else the file's name. */
  member: string;
  pid: number | undefined;
  /** Whether it led when the run started. */
  leader: boolean;
  /** The .cpuprofile and the flame graph drawn from it, relative to the results folder. */
  profile: string;
  flame: string;
  /** Time the profile covers, and the busy part of it, in ms. */
  profiledMs: number;
  busyMs: number;
  top: { name: string; selfMs: number; share: number }[];
}

/** The process and thread in a V8 profile's file name: CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile. */
export function profileOwner(file: string): { pid: number; thread: number } | undefined {
  const m = /^CPU\.\d+\.\d+\.(\d+)\.(\d+)\.\d+\.cpuprofile$/.exec(basename(file));
  return m === null ? undefined : { pid: Number(m[1]), thread: Number(m[2]) };
}

/**
 * Draws a flame graph next to every .cpuprofile in `<resultsDir>/<profDir>` (`<member>.flame.svg`)
 * and returns what it drew, members in order. `members` names the pids (m0, m1, ...). A profile
 * that cannot be read is skipped with a reason in `skipped`, never fatal: the run's figures stand
 * without it.
 */
export function drawFlames(
  resultsDir: string,
  profDir: string,
  system: string,
  members: readonly { name: string; pid: number | undefined; leader: boolean }[],
): { drawn: ProfileSummary[]; skipped: string[] } {
  const dir = join(resultsDir, profDir);
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  } catch (err) {
    return { drawn: [], skipped: [`${dir}: ${(err as Error).message}`] };
  }
  const drawn: ProfileSummary[] = [];
  const skipped: string[] = [];
  for (const f of files.sort()) {
    const owner = profileOwner(f);
    const pid = owner?.pid;
    const m = members.find((x) => x.pid !== undefined && x.pid === pid);
    // A worker thread of a member profiles on its own (thread 0 is the main thread).
    const member = m === undefined ? f.replace(/\.cpuprofile$/, '') : owner!.thread === 0 ? m.name : `${m.name}-thread${owner!.thread}`;
    let profile: CpuProfile;
    try {
      profile = JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile;
      if (!Array.isArray(profile.nodes)) throw new Error('no nodes');
    } catch (err) {
      skipped.push(`${f}: ${(err as Error).message}`);
      continue;
    }
    const root = foldProfile(profile);
    const profiledMs = (profile.endTime - profile.startTime) / 1000;
    const busyMs = root.total / 1000;
    const flame = `${member}.flame.svg`;
    const who = `${system} ${memberTitle(member, m?.leader ?? false)}${pid === undefined ? '' : `, pid ${pid}`}`;
    const share = busyShare(busyMs, profiledMs);
    const busy = share === undefined ? '' : ` (${share} of the time)`;
    writeFileSync(join(dir, flame), renderFlameSvg(root, `${who}: CPU profile`, `${usAsMs(root.total)} busy over ${usAsMs(profiledMs * 1000)} profiled${busy}; waiting left out; hover a box for its time`));
    drawn.push({
      member,
      pid,
      leader: m?.leader ?? false,
      profile: join(profDir, f),
      flame: join(profDir, flame),
      profiledMs,
      busyMs,
      top: topSelf(root).map((t) => ({ name: t.name, selfMs: t.selfUs / 1000, share: t.share })),
    });
  }
  const order = (s: ProfileSummary): number => {
    const i = members.findIndex((x) => x.name === s.member);
    return i < 0 ? members.length : i;
  };
  drawn.sort((a, b) => order(a) - order(b) || (a.member < b.member ? -1 : 1));
  return { drawn, skipped };
}
