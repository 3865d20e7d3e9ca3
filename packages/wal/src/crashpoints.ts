/**
 * Named failpoints a running member passes at chosen places, switched on from outside the process
 * as etcd's gofail ones are: `CAPSTAN_FAILPOINTS='walBeforeFsync=crash;raftAfterSave=5%crash'` in
 * its environment at start, or, when that variable is set at all (even empty), over HTTP while it
 * runs (the server's /debug/failpoints). Unset, nothing can arm them and a pass costs one lookup.
 *
 * A term is `[P%][N*]action`: fire with probability P percent (default 100), at most N times
 * (default: every time), doing `crash` (SIGKILL this process, as a power cut would stop it: no
 * handler runs, nothing is flushed) or `error(CODE)` (the operation at that place fails with that
 * errno, e.g. EIO), or `off`.
 */
export const FAILPOINTS_ENV = 'CAPSTAN_FAILPOINTS';

export const FAILPOINT_NAMES = [
  /** The WAL has written a batch and is about to fdatasync it. `crash` first overwrites the
   * batch with zeros, so it is lost as unsynced writes are in a power cut (a killed process
   * alone would leave them in the page cache); `error(EIO)` is fdatasync failing. */
  'walBeforeFsync',
  /** A Ready's entries and hard state are about to be saved: nothing of them is on disk. */
  'raftBeforeSave',
  /** They are durable; nothing of them has been sent, applied or acknowledged (except by a
   * leader writing behind, which sent them before and may have applied what its followers made
   * durable meanwhile; it still has not counted its own copy). */
  'raftAfterSave',
] as const;
export type FailpointSite = (typeof FAILPOINT_NAMES)[number];

export type FailAction = { readonly kind: 'crash' } | { readonly kind: 'error'; readonly code: string };

export interface FailTerm {
  readonly action: FailAction;
  /** Chance in percent that a pass fires. */
  readonly percent: number;
  /** Firings left. */
  left: number;
  /** The term as written, for listing. */
  readonly text: string;
}

export class FailpointSpecError extends Error {
  override readonly name = 'FailpointSpecError';
}

const TERM = /^(?:(\d+(?:\.\d+)?)%)?(?:(\d+)\*)?(crash|off|error\(([A-Z][A-Z0-9]*)\))$/;

export function isFailpointSite(name: string): name is FailpointSite {
  return (FAILPOINT_NAMES as readonly string[]).includes(name);
}

/** One term; `undefined` for `off`. */
export function parseTerm(text: string): FailTerm | undefined {
  const m = TERM.exec(text.trim());
  if (m === null) throw new FailpointSpecError(`failpoint action ${JSON.stringify(text)}: want [P%][N*](crash|error(CODE)|off)`);
  const percent = m[1] === undefined ? 100 : Number(m[1]);
  if (percent > 100) throw new FailpointSpecError(`failpoint action ${JSON.stringify(text)}: more than 100%`);
  if (m[3] === 'off') return undefined;
  const action: FailAction = m[4] === undefined ? { kind: 'crash' } : { kind: 'error', code: m[4] };
  return { action, percent, left: m[2] === undefined ? Infinity : Number(m[2]), text: text.trim() };
}

/** `name=term;name=term`, as in the environment variable. */
export function parseFailpoints(spec: string): Map<FailpointSite, FailTerm> {
  const out = new Map<FailpointSite, FailTerm>();
  for (const part of spec.split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim();
    if (!isFailpointSite(name)) throw new FailpointSpecError(`unknown failpoint ${JSON.stringify(name)} (known: ${FAILPOINT_NAMES.join(', ')})`);
    if (eq < 0) throw new FailpointSpecError(`failpoint ${name}: no action (want ${name}=crash, for one)`);
    const term = parseTerm(part.slice(eq + 1));
    if (term === undefined) out.delete(name);
    else out.set(name, term);
  }
  return out;
}

export class Failpoints {
  private readonly terms: Map<FailpointSite, FailTerm>;

  /** `spec` undefined: failpoints are off for good (nothing may arm them). */
  constructor(
    spec: string | undefined,
    private readonly random: () => number = Math.random,
  ) {
    this.enabled = spec !== undefined;
    try {
      this.terms = parseFailpoints(spec ?? '');
    } catch (err) {
      // Kept for the member to refuse to start with a clear message (a throw here would be an
      // import-time crash with a stack trace).
      if (!(err instanceof FailpointSpecError)) throw err;
      this.terms = new Map();
      this.specError = err;
    }
  }

  readonly enabled: boolean;
  /** What was wrong with the spec this was built from. */
  readonly specError: FailpointSpecError | undefined;

  /** Arms (or with `off`, disarms) one failpoint while the process runs. */
  set(name: string, text: string): void {
    if (!this.enabled) throw new FailpointSpecError(`failpoints are off: start the member with ${FAILPOINTS_ENV} set`);
    if (!isFailpointSite(name)) throw new FailpointSpecError(`unknown failpoint ${JSON.stringify(name)} (known: ${FAILPOINT_NAMES.join(', ')})`);
    const term = parseTerm(text);
    if (term === undefined) this.terms.delete(name);
    else this.terms.set(name, term);
  }

  /** Armed failpoints as `name=term` lines. */
  list(): string[] {
    return [...this.terms].map(([name, t]) => `${name}=${t.text}`);
  }

  /** What happens at `site` on this pass, if anything. */
  pass(site: FailpointSite): FailAction | undefined {
    if (this.terms.size === 0) return undefined;
    const t = this.terms.get(site);
    if (t === undefined || t.left <= 0) return undefined;
    if (t.percent < 100 && this.random() * 100 >= t.percent) return undefined;
    t.left--;
    return t.action;
  }
}

/** The process's failpoints, from its environment. A bad spec stops the process at start. */
export const failpoints = new Failpoints(process.env[FAILPOINTS_ENV]);

/** Stops this process where it stands, as a power cut would: no exit handlers, no flushing. */
export function crashHere(site: FailpointSite): never {
  process.stderr.write(JSON.stringify({ level: 'error', ts: new Date().toISOString(), msg: 'failpoint crash', failpoint: site }) + '\n');
  process.kill(process.pid, 'SIGKILL');
  // SIGKILL is delivered before kill() returns to a single-threaded caller; this is unreachable.
  throw new Error(`failpoint ${site}: SIGKILL did not stop the process`);
}

/** The errno error a failing system call would give, for `error(CODE)`. */
export function failpointError(site: FailpointSite, code: string): Error {
  return Object.assign(new Error(`${code}: injected failure at failpoint ${site}`), { code, syscall: site });
}

/**
 * Carries out what `pass` returned at `site`: throws the error, or crashes after `beforeCrash`
 * (which makes the crash look like a power cut at that place: it may undo unsynced writes).
 * Callers check `pass` first, so a disarmed site costs no await.
 */
export async function fire(site: FailpointSite, act: FailAction, beforeCrash?: () => Promise<void>): Promise<never> {
  if (act.kind === 'error') throw failpointError(site, act.code);
  await beforeCrash?.();
  crashHere(site);
}
