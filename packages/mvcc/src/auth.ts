/**
 * etcd's auth store (auth/store.go, range_perm_cache.go, simple_token.go): the enabled flag, users
 * (bcrypt hash, sorted roles, the no-password option), roles (permissions sorted by key) and the
 * auth revision, all in the backend's own keyspace ('a'), written by the applies that change them,
 * so they are staged in the same LevelDB batch as the consistent index, survive a restart and
 * travel in the store snapshot a lagging follower installs.
 *
 * Simple tokens live only in memory, as etcd's: an authenticate entry, applied on every member,
 * adds `${random prefix}.${its index}` with the TTL, each use renews it, and they are dropped on
 * auth disable, on the user's deletion or password change, and on restart.
 *
 * Records (values msgpack):
 *   'a' 'm' name      enabled (1 byte) / revision (u64)
 *   'a' 'u' user      { name, password?, roles, noPassword }
 *   'a' 'r' role      { name, perms: [{ permType, key, rangeEnd }] }
 */
import { randomInt } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { Packr } from 'msgpackr';
import type { Backend } from './backend.js';
import {
  errAuthFailed,
  errAuthNotEnabled,
  errAuthOldRevision,
  errCorrupt,
  errInvalidAuthMgmt,
  errNoPasswordUser,
  errPermissionDenied,
  errPermissionNotGiven,
  errPermissionNotGranted,
  errRoleAlreadyExist,
  errRoleEmpty,
  errRoleNotFound,
  errRoleNotGranted,
  errRootRoleNotExist,
  errRootUserNotExist,
  errUserAlreadyExist,
  errUserEmpty,
  errUserNotFound,
} from './errors.js';
import { readU64, spaceBounds, writeU64 } from './revision.js';
import { PermissionType, type AuthHeader, type AuthUserAddRequest, type Permission, type TxnRequest } from './types.js';

export const SPACE_AUTH = 0x61; // 'a'
export const ROOT_USER = 'root';
export const ROOT_ROLE = 'root';
/** etcd's bcrypt.DefaultCost and the range it accepts. */
export const DEFAULT_BCRYPT_COST = 10;
export const MIN_BCRYPT_COST = 4;
export const MAX_BCRYPT_COST = 31;
/** etcd's --auth-token-ttl default: 300 s. */
export const DEFAULT_TOKEN_TTL_MS = 300_000;
/** etcd's simple token prefix: 16 random letters. */
const TOKEN_PREFIX_LETTERS = 16;
const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

const KIND_META = 0x6d; // 'm'
const KIND_USER = 0x75; // 'u'
const KIND_ROLE = 0x72; // 'r'
const ENABLED_KEY = recordKey(KIND_META, 'enabled');
const REVISION_KEY = recordKey(KIND_META, 'revision');

const packr = new Packr({ useRecords: false, moreTypes: false });

/** Who a request is from, as etcd's AuthInfo: revision 0 means no user at all. */
export interface AuthInfo {
  readonly username: string;
  readonly revision: number;
}

export const NO_USER: AuthInfo = { username: '', revision: 0 };

export interface User {
  readonly name: string;
  /** bcrypt hash; absent for a no-password user. */
  readonly password?: string | undefined;
  /** Sorted. */
  readonly roles: readonly string[];
  readonly noPassword: boolean;
}

export interface Role {
  readonly name: string;
  /** Sorted by key. */
  readonly perms: readonly Permission[];
}

export interface AuthStoreOptions {
  /** Milliseconds, monotonic. */
  now: () => number;
  /** --auth-token-ttl in milliseconds. */
  tokenTTLMs?: number;
}

function recordKey(kind: number, name: string): Buffer {
  return Buffer.concat([Buffer.of(SPACE_AUTH, kind), Buffer.from(name, 'utf8')]);
}

/** bcrypt with the given cost (etcd hashes in the server before proposing, so the log never holds a password). */
export function hashPassword(password: string, cost = DEFAULT_BCRYPT_COST): Promise<string> {
  return bcrypt.hash(password, cost);
}

/** A half-open key interval; `end` null is unbounded (a range end of `\0`). */
interface Interval {
  begin: Buffer;
  end: Buffer | null;
}

const ZERO = Buffer.of(0);

/** etcd's range_perm_cache: a point is [key, key\0), `\0` as the end is open, else [key, end). */
function permInterval(key: Buffer, rangeEnd: Buffer): Interval | undefined {
  if (rangeEnd.length === 0) return { begin: key, end: Buffer.concat([key, ZERO]) };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { begin: key, end: null };
  if (Buffer.compare(key, rangeEnd) >= 0) return undefined; // an empty interval grants nothing
  return { begin: key, end: rangeEnd };
}

/** Sorted, overlapping and touching intervals merged, so coverage is one lookup. */
function merge(list: Interval[]): Interval[] {
  list.sort((a, b) => Buffer.compare(a.begin, b.begin));
  const out: Interval[] = [];
  for (const iv of list) {
    const last = out[out.length - 1];
    if (last !== undefined && (last.end === null || Buffer.compare(iv.begin, last.end) <= 0)) {
      if (last.end !== null && (iv.end === null || Buffer.compare(iv.end, last.end) > 0)) last.end = iv.end;
    } else out.push({ begin: iv.begin, end: iv.end });
  }
  return out;
}

/** Whether the merged intervals cover [key, rangeEnd) (a point when rangeEnd is empty). */
function covers(ivs: readonly Interval[], key: Uint8Array, rangeEnd: Uint8Array | undefined): boolean {
  const k = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  const point = rangeEnd === undefined || rangeEnd.length === 0;
  const open = !point && rangeEnd.length === 1 && rangeEnd[0] === 0;
  const end = point || open ? null : Buffer.from(rangeEnd.buffer, rangeEnd.byteOffset, rangeEnd.byteLength);
  for (const iv of ivs) {
    if (Buffer.compare(iv.begin, k) > 0) return false;
    const inside = iv.end === null || Buffer.compare(k, iv.end) < 0;
    if (!inside) continue;
    if (point) return true;
    if (iv.end === null) return true;
    // A request range that ends at or before its start holds no key: it needs only its start.
    if (!open && end !== null && (Buffer.compare(end, k) <= 0 || Buffer.compare(end, iv.end) <= 0)) return true;
    return false;
  }
  return false;
}

function sortedInsert(list: readonly string[], s: string): string[] {
  return [...list, s].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

export class AuthStore {
  private enabled = false;
  private rev = 1;
  private readonly users = new Map<string, User>();
  private readonly roles = new Map<string, Role>();
  /** token -> user and expiry (ms on the injected clock). */
  private readonly tokens = new Map<string, { user: string; expiry: number }>();
  /** user -> merged read and write intervals, rebuilt after any change (etcd's rangePermCache). */
  private readonly permCache = new Map<string, { read: Interval[]; write: Interval[] }>();
  private readonly now: () => number;
  readonly tokenTTLMs: number;

  private constructor(
    private readonly backend: Backend,
    opts: AuthStoreOptions,
  ) {
    this.now = opts.now;
    this.tokenTTLMs = opts.tokenTTLMs ?? DEFAULT_TOKEN_TTL_MS;
  }

  static async load(backend: Backend, opts: AuthStoreOptions): Promise<AuthStore> {
    const a = new AuthStore(backend, opts);
    await a.recover();
    return a;
  }

  /** Reloads everything from the backend (after a restart or a snapshot restore). Tokens of users gone or of a disabled store go. */
  async recover(): Promise<void> {
    await this.backend.flush();
    this.users.clear();
    this.roles.clear();
    this.permCache.clear();
    this.enabled = false;
    this.rev = 1;
    for await (const [key, value] of this.backend.db.iterator(spaceBounds(SPACE_AUTH))) {
      const name = key.subarray(2).toString('utf8');
      if (key[1] === KIND_USER) this.users.set(name, decodeUser(key, value));
      else if (key[1] === KIND_ROLE) this.roles.set(name, decodeRole(key, value));
      else if (key.equals(ENABLED_KEY)) this.enabled = value[0] === 1;
      else if (key.equals(REVISION_KEY)) this.rev = readU64(value, 0);
    }
    for (const [token, t] of this.tokens) if (!this.enabled || !this.users.has(t.user)) this.tokens.delete(token);
  }

  get isEnabled(): boolean {
    return this.enabled;
  }

  /** etcd's auth revision: bumped by every change to users, roles or the enabled flag (disable). */
  get revision(): number {
    return this.rev;
  }

  // ------------------------------------------------------------------ applied from the log

  /** Checks the header of an auth-changing request: the sender must hold the root role once auth is on. */
  checkAdmin(header: AuthHeader | undefined): void {
    if (header !== undefined) this.isAdminPermitted({ username: header.username, revision: header.authRevision });
  }

  enable(): void {
    if (this.enabled) return;
    const root = this.users.get(ROOT_USER);
    if (root === undefined) throw errRootUserNotExist();
    if (!root.roles.includes(ROOT_ROLE)) throw errRootRoleNotExist();
    this.enabled = true;
    this.backend.put(ENABLED_KEY, Buffer.of(1));
    this.permCache.clear();
  }

  disable(): void {
    if (!this.enabled) return;
    this.enabled = false;
    this.backend.put(ENABLED_KEY, Buffer.of(0));
    this.commitRevision();
    this.tokens.clear();
  }

  /** The authenticate entry at `index`: a token for `name`, valid on this member from now for the TTL. */
  authenticate(name: string, simpleToken: string, index: number): string {
    if (!this.enabled) throw errAuthNotEnabled();
    const user = this.users.get(name);
    if (user === undefined || user.noPassword) throw errAuthFailed();
    const token = `${simpleToken}.${index}`;
    this.sweepTokens();
    this.tokens.set(token, { user: name, expiry: this.now() + this.tokenTTLMs });
    return token;
  }

  userAdd(r: AuthUserAddRequest): void {
    if (r.name.length === 0) throw errUserEmpty();
    if (this.users.has(r.name)) throw errUserAlreadyExist();
    const noPassword = r.noPassword === true;
    this.putUser({ name: r.name, password: noPassword ? undefined : (r.hashedPassword ?? ''), roles: [], noPassword });
    this.commitRevision();
  }

  userDelete(name: string): void {
    if (this.enabled && name === ROOT_USER) throw errInvalidAuthMgmt();
    if (!this.users.has(name)) throw errUserNotFound();
    this.users.delete(name);
    this.backend.del(recordKey(KIND_USER, name));
    this.commitRevision();
    this.invalidateUser(name);
  }

  userChangePassword(name: string, hashedPassword: string): void {
    const user = this.users.get(name);
    if (user === undefined) throw errUserNotFound();
    this.putUser({ ...user, password: hashedPassword });
    this.commitRevision();
    this.invalidateUser(name);
  }

  userGrantRole(name: string, role: string): void {
    const user = this.users.get(name);
    if (user === undefined) throw errUserNotFound();
    // The root role need not exist to be granted, as etcd's.
    if (role !== ROOT_ROLE && !this.roles.has(role)) throw errRoleNotFound();
    if (user.roles.includes(role)) return;
    this.putUser({ ...user, roles: sortedInsert(user.roles, role) });
    this.commitRevision();
  }

  userRevokeRole(name: string, role: string): void {
    if (this.enabled && name === ROOT_USER && role === ROOT_ROLE) throw errInvalidAuthMgmt();
    const user = this.users.get(name);
    if (user === undefined) throw errUserNotFound();
    if (!user.roles.includes(role)) throw errRoleNotGranted();
    this.putUser({ ...user, roles: user.roles.filter((r) => r !== role) });
    this.commitRevision();
  }

  roleAdd(name: string): void {
    if (name.length === 0) throw errRoleEmpty();
    if (this.roles.has(name)) throw errRoleAlreadyExist();
    this.putRole({ name, perms: [] });
    this.commitRevision();
  }

  /** Deletes the role and takes it from every user holding it (etcd 3.4's RoleDelete). */
  roleDelete(name: string): void {
    if (this.enabled && name === ROOT_ROLE) throw errInvalidAuthMgmt();
    if (!this.roles.has(name)) throw errRoleNotFound();
    this.roles.delete(name);
    this.backend.del(recordKey(KIND_ROLE, name));
    for (const u of [...this.users.values()]) if (u.roles.includes(name)) this.putUser({ ...u, roles: u.roles.filter((r) => r !== name) });
    this.commitRevision();
  }

  /** Adds a permission, or changes the type of the one on the same key and range end. */
  roleGrantPermission(name: string, perm: Permission | undefined): void {
    if (perm === undefined) throw errPermissionNotGiven();
    const role = this.roles.get(name);
    if (role === undefined) throw errRoleNotFound();
    const key = Buffer.from(perm.key);
    const rangeEnd = Buffer.from(perm.rangeEnd ?? Buffer.alloc(0));
    const same = (p: Permission): boolean => p.key.equals(key) && p.rangeEnd.equals(rangeEnd);
    const kept = role.perms.filter((p) => !same(p));
    const perms = [...kept, { permType: perm.permType, key, rangeEnd }].sort((a, b) => Buffer.compare(a.key, b.key));
    this.putRole({ name, perms });
    this.commitRevision();
  }

  roleRevokePermission(name: string, key: Uint8Array, rangeEnd: Uint8Array | undefined): void {
    const role = this.roles.get(name);
    if (role === undefined) throw errRoleNotFound();
    const k = Buffer.from(key);
    const e = Buffer.from(rangeEnd ?? Buffer.alloc(0));
    const perms = role.perms.filter((p) => !(p.key.equals(k) && p.rangeEnd.equals(e)));
    if (perms.length === role.perms.length) throw errPermissionNotGranted();
    this.putRole({ name, perms });
    this.commitRevision();
  }

  // ------------------------------------------------------------------ reads

  getUser(name: string): User | undefined {
    return this.users.get(name);
  }

  getRole(name: string): Role | undefined {
    return this.roles.get(name);
  }

  userList(): string[] {
    return [...this.users.keys()].sort();
  }

  roleList(): string[] {
    return [...this.roles.keys()].sort();
  }

  hasRole(user: string, role: string): boolean {
    return this.users.get(user)?.roles.includes(role) === true;
  }

  // ------------------------------------------------------------------ passwords and tokens

  /**
   * etcd's CheckPassword: the auth revision the password was checked at. bcrypt runs off the
   * synchronous path (bcryptjs yields between rounds), so applies go on meanwhile.
   */
  async checkPassword(name: string, password: string): Promise<number> {
    if (!this.enabled) throw errAuthNotEnabled();
    const user = this.users.get(name);
    if (user === undefined) throw errAuthFailed();
    if (user.noPassword) throw errNoPasswordUser();
    const rev = this.rev;
    if (!(await bcrypt.compare(password, user.password ?? ''))) throw errAuthFailed();
    return rev;
  }

  /** etcd's genTokenPrefix: 16 random letters. */
  static tokenPrefix(): string {
    let s = '';
    for (let i = 0; i < TOKEN_PREFIX_LETTERS; i++) s += LETTERS[randomInt(LETTERS.length)];
    return s;
  }

  /** The user a token stands for, renewing its TTL (etcd's simple token keeper), or undefined. */
  tokenUser(token: string): string | undefined {
    const t = this.tokens.get(token);
    if (t === undefined) return undefined;
    const now = this.now();
    if (now >= t.expiry) {
      this.tokens.delete(token);
      return undefined;
    }
    t.expiry = now + this.tokenTTLMs;
    return t.user;
  }

  get tokenCount(): number {
    return this.tokens.size;
  }

  private sweepTokens(): void {
    const now = this.now();
    for (const [token, t] of this.tokens) if (now >= t.expiry) this.tokens.delete(token);
  }

  private invalidateUser(name: string): void {
    for (const [token, t] of this.tokens) if (t.user === name) this.tokens.delete(token);
  }

  // ------------------------------------------------------------------ permission checks (etcd's isOpPermitted)

  isAdminPermitted(ai: AuthInfo | undefined): void {
    if (!this.enabled) return;
    if (ai === undefined || ai.username === '') throw errUserEmpty();
    const user = this.users.get(ai.username);
    if (user === undefined) throw errUserNotFound();
    if (!user.roles.includes(ROOT_ROLE)) throw errPermissionDenied();
  }

  isRangePermitted(ai: AuthInfo, key: Uint8Array, rangeEnd?: Uint8Array): void {
    this.isOpPermitted(ai, key, rangeEnd, 'read');
  }

  isPutPermitted(ai: AuthInfo, key: Uint8Array): void {
    this.isOpPermitted(ai, key, undefined, 'write');
  }

  isDeleteRangePermitted(ai: AuthInfo, key: Uint8Array, rangeEnd?: Uint8Array): void {
    this.isOpPermitted(ai, key, rangeEnd, 'write');
  }

  /** etcd's checkTxnAuth: read on every compare, and every op of both branches, nested txns too. */
  checkTxn(ai: AuthInfo, t: TxnRequest): void {
    if (!this.enabled) return;
    for (const c of t.compare ?? []) this.isRangePermitted(ai, c.key, c.rangeEnd);
    for (const op of [...(t.success ?? []), ...(t.failure ?? [])]) {
      if (op.requestRange !== undefined) this.isRangePermitted(ai, op.requestRange.key, op.requestRange.rangeEnd);
      else if (op.requestPut !== undefined) this.isPutPermitted(ai, op.requestPut.key);
      else if (op.requestDeleteRange !== undefined) {
        const d = op.requestDeleteRange;
        if (d.prevKv === true) this.isRangePermitted(ai, d.key, d.rangeEnd);
        this.isDeleteRangePermitted(ai, d.key, d.rangeEnd);
      } else if (op.requestTxn !== undefined) this.checkTxn(ai, op.requestTxn);
    }
  }

  private isOpPermitted(ai: AuthInfo, key: Uint8Array, rangeEnd: Uint8Array | undefined, type: 'read' | 'write'): void {
    if (!this.enabled) return;
    if (ai.revision === 0) throw errUserEmpty();
    if (ai.revision < this.rev) throw errAuthOldRevision();
    const user = this.users.get(ai.username);
    if (user === undefined) throw errPermissionDenied();
    if (user.roles.includes(ROOT_ROLE)) return;
    const perms = this.mergedPerms(user);
    if (!covers(type === 'read' ? perms.read : perms.write, key, rangeEnd)) throw errPermissionDenied();
  }

  private mergedPerms(user: User): { read: Interval[]; write: Interval[] } {
    const cached = this.permCache.get(user.name);
    if (cached !== undefined) return cached;
    const read: Interval[] = [];
    const write: Interval[] = [];
    for (const name of user.roles) {
      for (const p of this.roles.get(name)?.perms ?? []) {
        const iv = permInterval(p.key, p.rangeEnd);
        if (iv === undefined) continue;
        if (p.permType === PermissionType.READ || p.permType === PermissionType.READWRITE) read.push(iv);
        if (p.permType === PermissionType.WRITE || p.permType === PermissionType.READWRITE) write.push(iv);
      }
    }
    const merged = { read: merge(read), write: merge(write) };
    this.permCache.set(user.name, merged);
    return merged;
  }

  // ------------------------------------------------------------------ records

  private commitRevision(): void {
    this.rev++;
    const b = Buffer.allocUnsafe(8);
    writeU64(b, 0, this.rev);
    this.backend.put(REVISION_KEY, b);
    this.permCache.clear();
  }

  private putUser(u: User): void {
    this.users.set(u.name, u);
    const rec: Record<string, unknown> = { name: u.name, roles: [...u.roles], noPassword: u.noPassword };
    if (u.password !== undefined) rec.password = u.password;
    this.backend.put(recordKey(KIND_USER, u.name), packr.pack(rec));
  }

  private putRole(r: Role): void {
    this.roles.set(r.name, r);
    const rec = { name: r.name, perms: r.perms.map((p) => ({ permType: p.permType, key: p.key, rangeEnd: p.rangeEnd })) };
    this.backend.put(recordKey(KIND_ROLE, r.name), packr.pack(rec));
  }
}

function decodeUser(key: Buffer, value: Buffer): User {
  const u = packr.unpack(value) as { name?: unknown; password?: unknown; roles?: unknown; noPassword?: unknown };
  if (typeof u.name !== 'string' || !Array.isArray(u.roles)) throw errCorrupt(`auth user record ${key.toString('hex')}`);
  return {
    name: u.name,
    password: typeof u.password === 'string' ? u.password : undefined,
    roles: (u.roles as unknown[]).map(String),
    noPassword: u.noPassword === true,
  };
}

function decodeRole(key: Buffer, value: Buffer): Role {
  const r = packr.unpack(value) as { name?: unknown; perms?: unknown };
  if (typeof r.name !== 'string' || !Array.isArray(r.perms)) throw errCorrupt(`auth role record ${key.toString('hex')}`);
  const perms = (r.perms as Array<{ permType: number; key: Uint8Array; rangeEnd: Uint8Array }>).map((p) => ({
    permType: p.permType as PermissionType,
    key: Buffer.from(p.key),
    rangeEnd: Buffer.from(p.rangeEnd),
  }));
  return { name: r.name, perms };
}
