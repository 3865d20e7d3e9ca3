/**
 * TLS settings of a member's client or peer side, as etcd's transport.TLSInfo: what its https
 * listeners present and require, and how it dials https peers.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate, type TlsOptions } from 'node:tls';
import * as grpc from '@grpc/grpc-js';

export interface TLSConfig {
  /** PEM certificate (chain) and private key this side presents, as a server and when dialing. */
  readonly cert: Buffer;
  readonly key: Buffer;
  /** PEM trusted CA certificates: what a connecting client's certificate must be signed by, and what a dialed peer's must be. */
  readonly ca?: Buffer;
  /**
   * Require a certificate signed by `ca` from whoever connects. etcd requires one when
   * --client-cert-auth is set or a trusted CA file is given (transport.TLSInfo.ServerConfig).
   */
  readonly clientCertAuth: boolean;
  /**
   * Auto TLS: the certificate is self-signed, so when dialing peers with it, their certificates are
   * not verified (etcd's selfCert sets InsecureSkipVerify).
   */
  readonly selfSigned: boolean;
}

/** Options for node:tls servers on this side's https URLs. */
export function tlsServerOptions(cfg: TLSConfig, alpn: readonly string[]): TlsOptions {
  return {
    cert: cfg.cert,
    key: cfg.key,
    ...(cfg.ca !== undefined ? { ca: cfg.ca } : {}),
    requestCert: cfg.clientCertAuth,
    rejectUnauthorized: cfg.clientCertAuth,
    ALPNProtocols: [...alpn],
    minVersion: 'TLSv1.2',
  };
}

/** How a dialed https peer's certificate is checked: not at all with auto TLS (etcd's InsecureSkipVerify). */
export function peerVerifyOptions(cfg: TLSConfig | undefined): { rejectUnauthorized?: false; checkServerIdentity?: () => undefined } {
  return cfg?.selfSigned === true ? { rejectUnauthorized: false, checkServerIdentity: () => undefined } : {};
}

/** Credentials for dialing a peer at `url`: TLS for https URLs (with this side's certificate when it has one). */
export function peerChannelCredentials(url: string, cfg: TLSConfig | undefined): grpc.ChannelCredentials {
  if (new URL(url).protocol !== 'https:') return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(cfg?.ca ?? null, cfg?.key ?? null, cfg?.cert ?? null, peerVerifyOptions(cfg));
}

function bareIP(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * etcd's checkSAN for peer connections: a client certificate that names hosts (IP or DNS subject
 * alternative names) must name the address the connection comes from; one naming none passes.
 * Returns an error message, or undefined when the certificate fits.
 */
export async function checkPeerSAN(cert: PeerCertificate, remoteAddress: string): Promise<string | undefined> {
  const names = (cert.subjectaltname ?? '').split(', ').filter((s) => s !== '');
  const ips = names.filter((n) => n.startsWith('IP Address:')).map((n) => n.slice('IP Address:'.length));
  const dns = names.filter((n) => n.startsWith('DNS:')).map((n) => n.slice('DNS:'.length));
  if (ips.length === 0 && dns.length === 0) return undefined;
  const remote = bareIP(remoteAddress);
  if (ips.length > 0 && checkServerIdentity(remote, cert) === undefined) return undefined;
  for (const name of dns) {
    const addrs = await lookup(name, { all: true }).catch(() => []);
    if (addrs.some((a) => bareIP(a.address) === remote)) return undefined;
  }
  return `tls: ${remote} does not match any of DNSNames ${JSON.stringify(dns)} or IPAddresses ${JSON.stringify(ips)}`;
}
