/**
 * A member's TLS flags turned into what the server takes: the files read and checked (a file that
 * cannot be read, or a key that does not fit its certificate, is a FlagError naming it), or with
 * auto TLS, etcd's self-signed certificate made once in `<data-dir>/fixtures/{client,peer}`.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { ensureSelfSignedCert, type TLSConfig } from '@capstan/server';
import { FlagError, type MemberFlags, type TLSFlags } from './flags.js';

async function read(flag: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new FlagError(`--${flag}: cannot read ${JSON.stringify(path)}: ${(err as Error).message}`);
  }
}

/** Checks PEM contents with node:tls itself, so a bad file is refused at start, not at the first connection. */
function check(what: string, opts: { cert?: Buffer; key?: Buffer; ca?: Buffer }): void {
  try {
    createSecureContext(opts);
  } catch (err) {
    throw new FlagError(`${what}: ${(err as Error).message}`);
  }
}

async function side(which: 'client' | 'peer', f: TLSFlags, dataDir: string, hosts: readonly string[]): Promise<TLSConfig | undefined> {
  const p = which === 'peer' ? 'peer-' : '';
  if (f.certFile !== '') {
    const cert = await read(`${p}cert-file`, f.certFile);
    const key = await read(`${p}key-file`, f.keyFile);
    const ca = f.trustedCAFile !== '' ? await read(`${p}trusted-ca-file`, f.trustedCAFile) : undefined;
    check(`--${p}cert-file ${JSON.stringify(f.certFile)} and --${p}key-file ${JSON.stringify(f.keyFile)}`, { cert, key });
    if (ca !== undefined) {
      check(`--${p}trusted-ca-file ${JSON.stringify(f.trustedCAFile)}`, { ca });
      if (!ca.toString('latin1').includes('-----BEGIN CERTIFICATE-----')) throw new FlagError(`--${p}trusted-ca-file ${JSON.stringify(f.trustedCAFile)}: no PEM certificate in it`);
    }
    // As etcd's TLSInfo.ServerConfig: a trusted CA file alone also makes client certificates required.
    return { cert, key, ca, clientCertAuth: f.clientCertAuth || ca !== undefined, selfSigned: false };
  }
  if (f.autoTLS) {
    const files = await ensureSelfSignedCert(join(dataDir, 'fixtures', which), hosts);
    return { cert: await read(`${p}auto-tls`, files.certFile), key: await read(`${p}auto-tls`, files.keyFile), clientCertAuth: false, selfSigned: true };
  }
  return undefined;
}

const hostnames = (urls: readonly string[]): string[] => [...new Set(urls.map((u) => new URL(u).hostname.replace(/^\[|\]$/g, '')))];

/** The client and peer TLS settings of a member, from its flags. */
export async function memberTLS(flags: MemberFlags): Promise<{ clientTLS?: TLSConfig; peerTLS?: TLSConfig }> {
  return {
    clientTLS: await side('client', flags.clientTLS, flags.dataDir, hostnames(flags.listenClientURLs)),
    peerTLS: await side('peer', flags.peerTLS, flags.dataDir, hostnames(flags.listenPeerURLs)),
  };
}

/** Files of one member's certificate and of the CA it and its peers and clients trust. */
export interface MemberCertFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
}

/** Member flags for https client and peer URLs with one certificate, client certificates required on both. */
export function memberTLSArgs(f: MemberCertFiles): string[] {
  return [
    `--cert-file=${f.certFile}`,
    `--key-file=${f.keyFile}`,
    `--trusted-ca-file=${f.caFile}`,
    '--client-cert-auth',
    `--peer-cert-file=${f.certFile}`,
    `--peer-key-file=${f.keyFile}`,
    `--peer-trusted-ca-file=${f.caFile}`,
    '--peer-client-cert-auth',
  ];
}

/** etcdctl's flags for a client certificate and the CA that signed the members' certificates. */
export function etcdctlTLSArgs(caFile: string, client: { readonly certFile: string; readonly keyFile: string }): string[] {
  return [`--cacert=${caFile}`, `--cert=${client.certFile}`, `--key=${client.keyFile}`];
}
