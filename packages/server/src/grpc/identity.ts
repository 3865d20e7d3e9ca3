/**
 * Who a client is, from its connection: the Common Name of the client certificate it presented over
 * TLS, which the server verified. etcd's auth takes it as the user name when no token is given
 * (AuthInfoFromTLS); this only reads it.
 */
import type { PeerCertificate } from 'node:tls';

/** What grpc-js's server calls offer (`call.getAuthContext()`; its AuthContext type is not exported). */
export interface HasAuthContext {
  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: PeerCertificate } | null;
}

/**
 * The CN of the verified client certificate a call came with, or undefined: a plaintext connection,
 * a TLS connection without a client certificate, or one whose certificate was not verified
 * (grpc-js reports a certificate only when the TLS socket is authorized, i.e. with
 * --client-cert-auth or a trusted CA file).
 */
export function certCommonName(call: HasAuthContext): string | undefined {
  const ctx = call.getAuthContext();
  if (ctx?.transportSecurityType !== 'ssl') return undefined;
  const cn: string | string[] | undefined = ctx.sslPeerCertificate?.subject?.CN;
  const first = Array.isArray(cn) ? cn[0] : cn;
  return first === undefined || first === '' ? undefined : first;
}
