/**
 * Who the client certificate says the caller is. With --client-cert-auth, etcd takes the common
 * name of a verified client certificate as the user when the call carries no token.
 */

/** The part of a grpc-js server call this needs (its getAuthContext(), TLS connections only). */
export interface CallWithAuthContext {
  getAuthContext?: () => { sslPeerCertificate?: { subject?: { CN?: string | string[] } } } | undefined;
}

/** The CN of the client certificate the call's TLS connection presented, if any. */
export function certCommonName(call: CallWithAuthContext): string | undefined {
  const cn = call.getAuthContext?.()?.sslPeerCertificate?.subject?.CN;
  const first = Array.isArray(cn) ? cn[0] : cn;
  return typeof first === 'string' && first !== '' ? first : undefined;
}
