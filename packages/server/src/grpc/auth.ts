/**
 * etcd's auth at the gRPC layer: who a call is from (its `token` metadata, else with
 * --client-cert-auth its certificate's CN), the header a proposal carries so the apply can check
 * it in log order, the checks etcd makes before serving reads, and the Auth service itself.
 */
import * as grpc from '@grpc/grpc-js';
import {
  AuthStore,
  asUnconvertedAuthError,
  errInvalidAuthToken,
  errRoleNotFound,
  errUserNotFound,
  hashPassword,
  MvccError,
  NO_USER,
  type AuthHeader,
  type AuthInfo,
  type Permission,
} from '@capstan/mvcc';
import type { Member } from '../api.js';
import { certCommonName, type HasAuthContext } from './identity.js';

/** etcd's TokenFieldNameGRPC, and the gateway's name for it. */
export const TOKEN_METADATA = 'token';
const TOKEN_METADATA_GATEWAY = 'authorization';
/** etcd's Authenticate retries while the auth store changed under the password check; a bound here. */
const AUTHENTICATE_ATTEMPTS = 5;

export interface AuthGateOptions {
  /** --client-cert-auth: a call without a token is the user its client certificate names. */
  readonly clientCertAuth?: boolean;
  /** --bcrypt-cost for passwords hashed before proposing. */
  readonly bcryptCost: number;
  /** How long a token may wait for this member to apply the entry that issued it. */
  readonly requestTimeoutMs?: number;
}

/** No user: what a proposal from a caller without token or certificate carries (read, never changed). */
const NO_USER_HEADER: AuthHeader = Object.freeze({ username: '', authRevision: 0 });

type Msg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
export type AuthCall = HasAuthContext & {
  readonly metadata: grpc.Metadata;
  /** A metadata key's first value without building the Metadata (GrpcServer's calls have it: most calls carry no token). */
  firstMetadata?(key: string): string | Buffer | undefined;
};

function firstMetadata(call: AuthCall, key: string): string | Buffer | undefined {
  return call.firstMetadata !== undefined ? call.firstMetadata(key) : call.metadata.get(key)[0];
}

/** The call's auth token, from etcd's metadata key or the gateway's. */
function tokenOf(call: AuthCall): string | Buffer | undefined {
  return firstMetadata(call, TOKEN_METADATA) ?? firstMetadata(call, TOKEN_METADATA_GATEWAY);
}

/** gRPC's Go code names, for watch cancel reasons (etcd writes the Go status error's text there). */
const GO_CODE: Record<string, string> = {
  INVALID_ARGUMENT: 'InvalidArgument',
  FAILED_PRECONDITION: 'FailedPrecondition',
  PERMISSION_DENIED: 'PermissionDenied',
  UNAUTHENTICATED: 'Unauthenticated',
  UNKNOWN: 'Unknown',
  NOT_FOUND: 'NotFound',
  UNAVAILABLE: 'Unavailable',
};

/** "rpc error: code = PermissionDenied desc = etcdserver: permission denied", as a Go status prints. */
export function goStatusText(err: MvccError): string {
  return `rpc error: code = ${GO_CODE[err.code] ?? err.code} desc = ${err.message}`;
}

export class AuthGate {
  constructor(
    private readonly member: Member,
    private readonly opts: AuthGateOptions,
  ) {}

  get store(): AuthStore {
    return this.member.sm.auth;
  }

  get bcryptCost(): number {
    return this.opts.bcryptCost;
  }

  /**
   * etcd's AuthInfoFromCtx: a token must be one this member knows (it waits, as etcd does, until it
   * has applied the entry that issued it), else "invalid auth token" whether or not auth is on. No
   * token: the certificate's CN with --client-cert-auth, else nobody (undefined).
   */
  async info(call: AuthCall): Promise<AuthInfo | undefined> {
    const token = tokenOf(call);
    if (token !== undefined) {
      const t = String(token);
      const parts = t.split('.');
      const index = parts.length === 2 ? Number(parts[1]) : NaN;
      if (!Number.isSafeInteger(index) || index < 0) throw errInvalidAuthToken();
      if (!(await this.applied(index))) throw errInvalidAuthToken();
      const user = this.store.tokenUser(t);
      if (user === undefined) throw errInvalidAuthToken();
      return { username: user, revision: this.store.revision };
    }
    if (this.opts.clientCertAuth === true) {
      const cn = certCommonName(call);
      if (cn !== undefined) return { username: cn, revision: this.store.revision };
    }
    return undefined;
  }

  /**
   * The header of a call with no token, when no certificate can name a user either: known at once,
   * without the promises of header() (most calls, and every one while auth is off).
   */
  anonymousHeader(call: AuthCall): AuthHeader | undefined {
    if (this.opts.clientCertAuth === true) return undefined;
    if (tokenOf(call) !== undefined) return undefined;
    return NO_USER_HEADER;
  }

  /** The header every client proposal carries (no user: empty name, revision 0, refused once auth is on). */
  async header(call: AuthCall): Promise<AuthHeader> {
    const ai = await this.info(call);
    return { username: ai?.username ?? '', authRevision: ai?.revision ?? 0 };
  }

  /** Read permission on a key or range, checked where the read is served. */
  async checkRange(call: AuthCall, key: Uint8Array, rangeEnd?: Uint8Array): Promise<void> {
    this.store.isRangePermitted((await this.info(call)) ?? NO_USER, key, rangeEnd);
  }

  async checkAdmin(call: AuthCall): Promise<void> {
    this.store.isAdminPermitted(await this.info(call));
  }

  /**
   * etcd 3.4's Maintenance checks (Hash, HashKV, Defragment, Snapshot): the root role, and its
   * errors go out unconverted (UNKNOWN, "auth: permission denied").
   */
  async checkMaintenance(call: AuthCall): Promise<void> {
    try {
      await this.checkAdmin(call);
    } catch (err) {
      throw err instanceof MvccError ? asUnconvertedAuthError(err) : err;
    }
  }

  private applied(index: number): Promise<boolean> {
    const timeoutMs = this.opts.requestTimeoutMs ?? 7000;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.member.waitApplied(index).then(
        () => {
          clearTimeout(timer);
          resolve(true);
        },
        () => {
          clearTimeout(timer);
          resolve(false);
        },
      );
    });
  }
}

/**
 * etcd's Auth service. Changes are proposed with the caller's header and checked when applied;
 * passwords are hashed here first, so neither the log nor a snapshot ever holds one. Lookups are
 * served locally after a ReadIndex barrier, with the checks etcd's applier makes for them.
 */
export function authService(
  member: Member,
  gate: AuthGate,
  unary: (name: string, fn: (req: Msg, size: number, call: AuthCall) => Promise<Msg> | Msg) => grpc.handleUnaryCall<unknown, Msg>,
  header: (revision?: number) => Msg,
): grpc.UntypedServiceImplementation {
  const store = (): AuthStore => gate.store;
  const change =
    (name: string, build: (m: Msg) => Promise<Record<string, unknown>> | Record<string, unknown>): grpc.handleUnaryCall<unknown, Msg> =>
      unary(name, async (m, _size, call) => {
        const h = await gate.header(call);
        const req = await build(m);
        await member.propose({ ...req, header: h });
        return { header: header() };
      });
  /** Hashing costs about 2^cost rounds: refuse a caller who may not change users before paying for it. */
  const hashFor = async (call: AuthCall, password: string): Promise<string> => {
    await gate.checkAdmin(call);
    return hashPassword(password, gate.bcryptCost);
  };
  /** After a ReadIndex barrier: the root role, or what `allowed` grants the caller instead (the admin error otherwise). */
  const adminOr = async (call: AuthCall, allowed: (ai: AuthInfo) => boolean): Promise<void> => {
    await member.readBarrier();
    const ai = await gate.info(call);
    try {
      store().isAdminPermitted(ai);
    } catch (err) {
      if (ai === undefined || !allowed(ai)) throw err;
    }
  };
  return {
    AuthEnable: change('AuthEnable', () => ({ authEnable: {} })),
    AuthDisable: change('AuthDisable', () => ({ authDisable: {} })),
    AuthStatus: unary('AuthStatus', async (_m, _s, call) => {
      await member.readBarrier();
      await gate.checkAdmin(call);
      return { header: header(), enabled: store().isEnabled, authRevision: store().revision };
    }),
    Authenticate: unary('Authenticate', async (m) => {
      const name = String(m.name);
      const password = String(m.password);
      await member.readBarrier();
      let token = '';
      for (let attempt = 0; attempt < AUTHENTICATE_ATTEMPTS; attempt++) {
        const checked = await store().checkPassword(name, password);
        const r = (await member.propose({ authenticate: { name, simpleToken: AuthStore.tokenPrefix() } })) as { token: string };
        token = r.token;
        // The password was checked against the store as it was; had it changed since (a new
        // password, a deleted user), the token would be for a stale check: try again, as etcd.
        if (checked === store().revision) break;
      }
      return { header: header(), token };
    }),
    UserAdd: unary('UserAdd', async (m, _size, call) => {
      const h = await gate.header(call);
      const noPassword = m.options?.noPassword === true;
      const hashedPassword = noPassword ? undefined : await hashFor(call, String(m.password));
      await member.propose({ authUserAdd: { name: String(m.name), hashedPassword, noPassword }, header: h });
      return { header: header() };
    }),
    UserChangePassword: unary('UserChangePassword', async (m, _size, call) => {
      const h = await gate.header(call);
      const hashedPassword = await hashFor(call, String(m.password));
      await member.propose({ authUserChangePassword: { name: String(m.name), hashedPassword }, header: h });
      return { header: header() };
    }),
    UserDelete: change('UserDelete', (m) => ({ authUserDelete: { name: String(m.name) } })),
    UserGrantRole: change('UserGrantRole', (m) => ({ authUserGrantRole: { user: String(m.user), role: String(m.role) } })),
    UserRevokeRole: change('UserRevokeRole', (m) => ({ authUserRevokeRole: { name: String(m.name), role: String(m.role) } })),
    RoleAdd: change('RoleAdd', (m) => ({ authRoleAdd: { name: String(m.name) } })),
    RoleDelete: change('RoleDelete', (m) => ({ authRoleDelete: { role: String(m.role) } })),
    RoleGrantPermission: change('RoleGrantPermission', (m) => {
      const p = m.perm as Msg | undefined;
      const perm: Permission | undefined =
        p === undefined ? undefined : { permType: (p.permType ?? 0) as Permission['permType'], key: Buffer.from(p.key ?? []), rangeEnd: Buffer.from(p.rangeEnd ?? []) };
      return { authRoleGrantPermission: { name: String(m.name), perm } };
    }),
    RoleRevokePermission: change('RoleRevokePermission', (m) => ({
      authRoleRevokePermission: { role: String(m.role), key: Buffer.from(m.key ?? []), rangeEnd: Buffer.from(m.rangeEnd ?? []) },
    })),
    // A user may read itself, and the roles it holds; everything else needs the root role (etcd's authApplierV3).
    UserGet: unary('UserGet', async (m, _size, call) => {
      const name = String(m.name);
      await adminOr(call, (ai) => ai.username === name);
      const u = store().getUser(name);
      if (u === undefined) throw errUserNotFound();
      return { header: header(), roles: [...u.roles] };
    }),
    RoleGet: unary('RoleGet', async (m, _size, call) => {
      const role = String(m.role);
      await adminOr(call, (ai) => store().hasRole(ai.username, role));
      const r = store().getRole(role);
      if (r === undefined) throw errRoleNotFound();
      return { header: header(), perm: r.perms.map((p) => ({ permType: p.permType, key: p.key, rangeEnd: p.rangeEnd })) };
    }),
    UserList: unary('UserList', async (_m, _size, call) => {
      await member.readBarrier();
      await gate.checkAdmin(call);
      return { header: header(), users: store().userList() };
    }),
    RoleList: unary('RoleList', async (_m, _size, call) => {
      await member.readBarrier();
      await gate.checkAdmin(call);
      return { header: header(), roles: store().roleList() };
    }),
  };
}
