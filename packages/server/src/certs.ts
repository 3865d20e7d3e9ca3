/**
 * Certificates for TLS: a CA and the certificates it signs (`capstan up --tls`, tests), and etcd's
 * self-signed auto-TLS certificate (`--auto-tls`, `--peer-auto-tls`). ECDSA P-256 keys; the X.509
 * encoding and signing is @peculiar/x509's (on Node's WebCrypto), loaded only when a certificate is
 * made, with the Reflect metadata polyfill its dependency injection needs.
 */
import { createPrivateKey, KeyObject, webcrypto } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 3600 * 1000;

/** A certificate and its private key, both PEM. */
export interface KeyPairPem {
  readonly cert: string;
  readonly key: string;
}

export interface IssueOptions {
  readonly commonName: string;
  /** Subject alternative names: IP addresses and DNS names. */
  readonly hosts?: readonly string[];
  /** What the certificate may be used for (default both: members serve clients and dial peers with one certificate). */
  readonly usage?: 'server' | 'client' | 'both';
  readonly validityDays?: number;
}

type X509 = typeof import('@peculiar/x509');
let lib: Promise<X509> | undefined;
function x509(): Promise<X509> {
  return (lib ??= (async () => {
    await import('reflect-metadata');
    return import('@peculiar/x509');
  })());
}

function keyPem(key: webcrypto.CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }) as string;
}

async function newKeys(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
}

async function leafExtensions(x: X509, opts: IssueOptions, publicKey: webcrypto.CryptoKey): Promise<InstanceType<X509['Extension']>[]> {
  const usage = opts.usage ?? 'both';
  const eku = [
    ...(usage !== 'client' ? [x.ExtendedKeyUsage.serverAuth] : []),
    ...(usage !== 'server' ? [x.ExtendedKeyUsage.clientAuth] : []),
  ];
  const ext: InstanceType<X509['Extension']>[] = [
    new x.BasicConstraintsExtension(false, undefined, true),
    new x.KeyUsagesExtension(x.KeyUsageFlags.digitalSignature | x.KeyUsageFlags.keyEncipherment, true),
    new x.ExtendedKeyUsageExtension(eku),
    await x.SubjectKeyIdentifierExtension.create(publicKey),
  ];
  const hosts = opts.hosts ?? [];
  if (hosts.length > 0) {
    ext.push(new x.SubjectAlternativeNameExtension(hosts.map((h) => (isIP(h) !== 0 ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h }))));
  }
  return ext;
}

/** Distinguished names are written here from plain words only (no escaping needed). */
function cn(name: string): string {
  if (!/^[\w .@-]+$/.test(name)) throw new Error(`certificate name ${JSON.stringify(name)}: only letters, digits, space, '.', '@', '_' and '-' are allowed`);
  return `CN=${name}`;
}

/** A new certificate authority (self-signed, allowed to sign leaf certificates only). */
export async function createCA(commonName = 'capstan CA', validityDays = 3650): Promise<KeyPairPem> {
  const x = await x509();
  const keys = await newKeys();
  const now = Date.now();
  const cert = await x.X509CertificateGenerator.createSelfSigned({
    name: cn(commonName),
    keys,
    signingAlgorithm: ALG,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + validityDays * DAY_MS),
    extensions: [
      new x.BasicConstraintsExtension(true, 0, true),
      new x.KeyUsagesExtension(x.KeyUsageFlags.keyCertSign | x.KeyUsageFlags.cRLSign, true),
      await x.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert: cert.toString('pem'), key: keyPem(keys.privateKey) };
}

/** A certificate signed by `ca`, with a key of its own. */
export async function issueCert(ca: KeyPairPem, opts: IssueOptions): Promise<KeyPairPem> {
  const x = await x509();
  const caCert = new x.X509Certificate(ca.cert);
  const caKey = await webcrypto.subtle.importKey('pkcs8', createPrivateKey(ca.key).export({ type: 'pkcs8', format: 'der' }), ALG, false, ['sign']);
  const keys = await newKeys();
  const now = Date.now();
  const cert = await x.X509CertificateGenerator.create({
    subject: cn(opts.commonName),
    issuer: caCert.subject,
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: ALG,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (opts.validityDays ?? 3650) * DAY_MS),
    extensions: [...(await leafExtensions(x, opts, keys.publicKey)), await x.AuthorityKeyIdentifierExtension.create(caCert)],
  });
  return { cert: cert.toString('pem'), key: keyPem(keys.privateKey) };
}

/** etcd's SelfCert: a self-signed certificate (O=etcd, one year) for the given hosts. */
export async function selfSignedCert(hosts: readonly string[]): Promise<KeyPairPem> {
  const x = await x509();
  const keys = await newKeys();
  const now = Date.now();
  const cert = await x.X509CertificateGenerator.createSelfSigned({
    name: 'O=etcd',
    keys,
    signingAlgorithm: ALG,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 365 * DAY_MS),
    extensions: await leafExtensions(x, { commonName: 'etcd', hosts }, keys.publicKey),
  });
  return { cert: cert.toString('pem'), key: keyPem(keys.privateKey) };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Writes a certificate and its key (the key readable by the owner only). */
export async function writeKeyPair(certFile: string, keyFile: string, pair: KeyPairPem): Promise<void> {
  await writeFile(keyFile, pair.key, { mode: 0o600 });
  await writeFile(certFile, pair.cert);
}

export interface CertFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

/**
 * etcd's auto TLS: `<dir>/cert.pem` and `<dir>/key.pem`, made (self-signed for `hosts`) only if
 * they are not there yet, so a restarted member keeps its certificate.
 */
export async function ensureSelfSignedCert(dir: string, hosts: readonly string[]): Promise<CertFiles & { created: boolean }> {
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  if ((await exists(certFile)) && (await exists(keyFile))) return { certFile, keyFile, created: false };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeKeyPair(certFile, keyFile, await selfSignedCert(hosts));
  return { certFile, keyFile, created: true };
}

/** The files of a cluster's certificates (see ensureClusterCerts). */
export interface ClusterCertFiles {
  readonly dir: string;
  readonly caFile: string;
  /** Per member name: one certificate for its client and peer URLs, usable as server and client. */
  readonly members: ReadonlyMap<string, CertFiles>;
  /** A client certificate (CN=root by default) for etcdctl and other clients. */
  readonly client: CertFiles;
}

/**
 * A CA and, signed by it, one certificate per member (for `hosts`) and one client certificate, in
 * `dir` as ca.pem/ca-key.pem, NAME.pem/NAME-key.pem and client.pem/client-key.pem. Files already
 * there are kept (a cluster restarted on its data dir keeps its certificates); missing ones are
 * signed by the CA found there.
 */
export async function ensureClusterCerts(
  dir: string,
  names: readonly string[],
  opts: { hosts?: readonly string[]; clientCommonName?: string } = {},
): Promise<ClusterCertFiles> {
  const hosts = opts.hosts ?? ['127.0.0.1', 'localhost'];
  const clash = names.find((n) => n === 'ca' || n === 'client');
  if (clash !== undefined) throw new Error(`a member named ${JSON.stringify(clash)} would share its certificate files with the ${clash}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const caFile = join(dir, 'ca.pem');
  const caKeyFile = join(dir, 'ca-key.pem');
  let ca: KeyPairPem;
  if ((await exists(caFile)) && (await exists(caKeyFile))) {
    ca = { cert: await readFile(caFile, 'utf8'), key: await readFile(caKeyFile, 'utf8') };
  } else {
    ca = await createCA();
    await writeKeyPair(caFile, caKeyFile, ca);
  }
  const ensure = async (base: string, o: IssueOptions): Promise<CertFiles> => {
    const files = { certFile: join(dir, `${base}.pem`), keyFile: join(dir, `${base}-key.pem`) };
    if (!(await exists(files.certFile)) || !(await exists(files.keyFile))) await writeKeyPair(files.certFile, files.keyFile, await issueCert(ca, o));
    return files;
  };
  const members = new Map<string, CertFiles>();
  for (const name of names) members.set(name, await ensure(name, { commonName: name, hosts, usage: 'both' }));
  const client = await ensure('client', { commonName: opts.clientCommonName ?? 'root', usage: 'client' });
  return { dir, caFile, members, client };
}
