/**
 * TLS on a member's listeners (listen.ts) and the client identity helper: gRPC and HTTP/1 on one
 * https port, client certificates required or not, certCommonName reading the verified client
 * certificate's CN, peers' SAN check, and the certificate module.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { createCA, ensureClusterCerts, ensureSelfSignedCert, issueCert, type KeyPairPem } from '../src/certs.js';
import { certCommonName } from '../src/grpc/identity.js';
import { listenMux, type Mux } from '../src/listen.js';
import { checkPeerSAN, type TLSConfig } from '../src/tls.js';
import { freePorts } from './helpers/ports.js';

const identity = (b: Buffer): Buffer => b;
const WHO: grpc.ServiceDefinition = {
  name: {
    path: '/test.Who/Name',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};
const WhoClient = grpc.makeGenericClientConstructor(WHO, 'Who');
/** The answer when certCommonName finds nothing. */
const NONE = '<none>';

interface Cred {
  ca?: KeyPairPem;
  client?: KeyPairPem;
}

/** Calls Who/Name: the CN the server saw, or the error's message. */
function who(addr: string, tls: Cred | undefined): Promise<{ cn?: string; error?: string }> {
  const creds =
    tls === undefined
      ? grpc.credentials.createInsecure()
      : grpc.credentials.createSsl(tls.ca !== undefined ? Buffer.from(tls.ca.cert) : null, tls.client !== undefined ? Buffer.from(tls.client.key) : null, tls.client !== undefined ? Buffer.from(tls.client.cert) : null);
  const client = new WhoClient(addr, creds) as unknown as grpc.Client & {
    name(req: Buffer, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Buffer) => void): void;
  };
  return new Promise((resolve) => {
    client.name(Buffer.alloc(0), { deadline: new Date(Date.now() + 5000) }, (err, res) => {
      client.close();
      resolve(err === null ? { cn: res!.toString() } : { error: err.details });
    });
  });
}

function httpsGet(port: number, ca: KeyPairPem, client?: KeyPairPem): Promise<{ status?: number; body?: string; error?: string }> {
  return new Promise((resolve) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, path: '/health', ca: ca.cert, ...(client !== undefined ? { cert: client.cert, key: client.key } : {}), agent: false },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      },
    );
    req.on('error', (err) => resolve({ error: err.message }));
    req.end();
  });
}

t.test('gRPC and HTTP/1 on https ports; certCommonName', async (t) => {
  const ca = await createCA('test CA');
  const other = await createCA('other CA');
  const server = await issueCert(ca, { commonName: 'member', hosts: ['127.0.0.1', 'localhost'], usage: 'server' });
  const alice = await issueCert(ca, { commonName: 'alice', usage: 'client' });
  const mallory = await issueCert(other, { commonName: 'mallory', usage: 'client' });

  const grpcServer = new grpc.Server();
  grpcServer.addService(WHO, {
    name: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(certCommonName(call) ?? NONE)),
  });
  const http: HttpServer = createHttpServer((_req, res) => res.end('{"health":"true"}'));
  const base = { cert: Buffer.from(server.cert), key: Buffer.from(server.key), ca: Buffer.from(ca.cert), selfSigned: false };
  const strict: TLSConfig = { ...base, clientCertAuth: true };
  const lax: TLSConfig = { ...base, clientCertAuth: false };
  const [pStrict, pLax, pPlain] = (await freePorts(3)) as [number, number, number];
  const logs: Array<Record<string, unknown>> = [];
  const log = (level: string, msg: string, fields?: Record<string, unknown>): void => void logs.push({ level, msg, ...fields });
  const muxes: Mux[] = [
    await listenMux([`https://127.0.0.1:${pStrict}`], { grpc: grpcServer, http, tls: strict, log }),
    await listenMux([`https://127.0.0.1:${pLax}`], { grpc: grpcServer, http, tls: lax, log }),
    await listenMux([`http://127.0.0.1:${pPlain}`], { grpc: grpcServer, http }),
  ];
  t.teardown(async () => {
    for (const m of muxes) await m.close();
    grpcServer.forceShutdown();
  });

  t.test('client certificates required', async (t) => {
    t.same(await who(`127.0.0.1:${pStrict}`, { ca, client: alice }), { cn: 'alice' }, 'the CN of the verified client certificate');
    const none = await who(`127.0.0.1:${pStrict}`, { ca });
    t.ok(none.error, `no client certificate: refused (${none.error})`);
    const wrong = await who(`127.0.0.1:${pStrict}`, { ca, client: mallory });
    t.ok(wrong.error, `a client certificate from another CA: refused (${wrong.error})`);
    t.ok(
      logs.some((l) => l.msg === 'rejected connection'),
      'a refused handshake is logged',
    );
    const unknownServer = await who(`127.0.0.1:${pStrict}`, { ca: other, client: alice });
    t.ok(unknownServer.error, `a client trusting another CA does not accept the server (${unknownServer.error})`);
    t.same(await httpsGet(pStrict, ca, alice), { status: 200, body: '{"health":"true"}' }, 'HTTP/1 over TLS on the same port');
    t.ok((await httpsGet(pStrict, ca)).error, 'HTTP/1 without a client certificate: refused');
  });

  t.test('client certificates not required', async (t) => {
    t.same(await who(`127.0.0.1:${pLax}`, { ca }), { cn: NONE }, 'TLS without a client certificate: no CN');
    t.same(await who(`127.0.0.1:${pLax}`, { ca, client: alice }), { cn: NONE }, 'a certificate the server did not ask for is not seen');
    t.same(await httpsGet(pLax, ca), { status: 200, body: '{"health":"true"}' });
  });

  t.test('plaintext', async (t) => {
    t.same(await who(`127.0.0.1:${pPlain}`, undefined), { cn: NONE }, 'no TLS: no CN');
    const r = await fetch(`http://127.0.0.1:${pPlain}/health`);
    t.equal(await r.text(), '{"health":"true"}');
  });

  t.test('a TLS client that offers no ALPN protocol is routed by its first bytes', async (t) => {
    const text = await new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port: pStrict, ca: ca.cert, cert: alice.cert, key: alice.key }, () => {
        t.equal(s.alpnProtocol, false, 'no protocol negotiated');
        s.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      });
      let out = '';
      s.on('data', (d: Buffer) => (out += d.toString()));
      s.on('end', () => resolve(out));
      s.on('error', reject);
    });
    t.match(text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\{"health":"true"\}$/);
  });
});

t.test('a peer listener refuses a client certificate naming other hosts than the address it comes from', async (t) => {
  const ca = await createCA();
  const server = await issueCert(ca, { commonName: 'm1', hosts: ['127.0.0.1'] });
  const here = await issueCert(ca, { commonName: 'm2', hosts: ['127.0.0.1'] });
  const elsewhere = await issueCert(ca, { commonName: 'm3', hosts: ['127.0.0.9'] });
  const grpcServer = new grpc.Server();
  grpcServer.addService(WHO, {
    name: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(certCommonName(call) ?? NONE)),
  });
  const [port] = (await freePorts(1)) as [number];
  const logs: Array<Record<string, unknown>> = [];
  const tls: TLSConfig = { cert: Buffer.from(server.cert), key: Buffer.from(server.key), ca: Buffer.from(ca.cert), clientCertAuth: true, selfSigned: false };
  const mux = await listenMux([`https://127.0.0.1:${port}`], { grpc: grpcServer, tls, checkSAN: true, log: (level, msg, fields) => void logs.push({ level, msg, ...fields }) });
  t.teardown(async () => {
    await mux.close();
    grpcServer.forceShutdown();
  });
  t.same(await who(`127.0.0.1:${port}`, { ca, client: here }), { cn: 'm2' }, 'a certificate naming 127.0.0.1, from 127.0.0.1');
  const r = await who(`127.0.0.1:${port}`, { ca, client: elsewhere });
  t.ok(r.error, 'a certificate naming only 127.0.0.9, from 127.0.0.1: refused');
  t.ok(
    logs.some((l) => l.msg === 'rejected connection' && /127\.0\.0\.1 does not match/.test(String(l.error))),
    "logged: the address does not match the certificate's names",
  );
});

t.test("checkPeerSAN: a peer certificate naming hosts must name the connection's address", async (t) => {
  const ca = await createCA();
  const cert = (pair: KeyPairPem): PeerCertificate => {
    const x = new X509Certificate(pair.cert);
    return { subjectaltname: x.subjectAltName, subject: {}, raw: x.raw } as unknown as PeerCertificate;
  };
  const ip = cert(await issueCert(ca, { commonName: 'm', hosts: ['127.0.0.1'] }));
  t.equal(await checkPeerSAN(ip, '127.0.0.1'), undefined);
  t.equal(await checkPeerSAN(ip, '::ffff:127.0.0.1'), undefined, 'an IPv4-mapped address');
  t.match(await checkPeerSAN(ip, '127.0.0.2'), /127\.0\.0\.2 does not match/);
  const dns = cert(await issueCert(ca, { commonName: 'm', hosts: ['localhost'] }));
  t.equal(await checkPeerSAN(dns, '127.0.0.1'), undefined, 'a DNS name resolving to the address');
  t.match(await checkPeerSAN(dns, '127.0.0.2'), /does not match/);
  t.equal(await checkPeerSAN(cert(await issueCert(ca, { commonName: 'm' })), '127.0.0.2'), undefined, 'a certificate naming no host');
});

t.test('certificate files: made once, kept on the next call', async (t) => {
  const dir = t.testdir();
  const a = await ensureClusterCerts(join(dir, 'tls'), ['infra1', 'infra2']);
  const before = await readFile(a.members.get('infra1')!.certFile, 'utf8');
  const b = await ensureClusterCerts(join(dir, 'tls'), ['infra1', 'infra2', 'infra3']);
  t.equal(await readFile(b.members.get('infra1')!.certFile, 'utf8'), before, 'an existing certificate is kept');
  const third = new X509Certificate(await readFile(b.members.get('infra3')!.certFile));
  t.ok(third.verify(new X509Certificate(await readFile(b.caFile)).publicKey), "a new member's certificate is signed by the existing CA");
  t.match(third.subjectAltName, /IP Address:127\.0\.0\.1/);
  t.match(third.subjectAltName, /DNS:localhost/);
  const client = new X509Certificate(await readFile(b.client.certFile));
  t.match(client.subject, /CN=root/, 'the client certificate is for root');
  t.rejects(ensureClusterCerts(join(dir, 'x'), ['client']), /share its certificate files/);
  const s1 = await ensureSelfSignedCert(join(dir, 'fixtures', 'peer'), ['127.0.0.1']);
  const s2 = await ensureSelfSignedCert(join(dir, 'fixtures', 'peer'), ['127.0.0.1']);
  t.same([s1.created, s2.created], [true, false]);
  const self = new X509Certificate(await readFile(s1.certFile));
  t.equal(self.issuer, self.subject, 'self-signed');
  t.match(self.subject, /O=etcd/);
});
