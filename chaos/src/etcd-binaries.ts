/**
 * Debian's etcd 3.4 binaries (etcd and etcdctl), unpacked into <repo>/.cache/etcd by
 * scripts/fetch-etcd.sh (apt-get download + dpkg -x, nothing installed), fetched on first use.
 * ETCD_BIN and ETCDCTL_BIN override the paths. Shared by chaos/ and bench/.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs from <repo>/chaos/dist/src). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const ETCD_CACHE_BIN = join(REPO_ROOT, '.cache/etcd/usr/bin');
/** The fetch script gives up after this long (apt-get may have to update its lists first). */
export const FETCH_TIMEOUT_MS = 300_000;

export interface EtcdBinaries {
  readonly etcd: string;
  readonly etcdctl: string;
}

function paths(): EtcdBinaries {
  return {
    etcd: process.env.ETCD_BIN || join(ETCD_CACHE_BIN, 'etcd'),
    etcdctl: process.env.ETCDCTL_BIN || join(ETCD_CACHE_BIN, 'etcdctl'),
  };
}

/** Paths of etcd and etcdctl, running scripts/fetch-etcd.sh first if they are not there yet. */
export function etcdBinaries(): EtcdBinaries {
  let p = paths();
  if (existsSync(p.etcd) && existsSync(p.etcdctl)) return p;
  const script = join(REPO_ROOT, 'scripts/fetch-etcd.sh');
  try {
    execFileSync('bash', [script], { stdio: ['ignore', 'pipe', 'pipe'], timeout: FETCH_TIMEOUT_MS });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`${script} failed: ${e.stderr?.toString().trim() || e.message}`);
  }
  p = paths();
  for (const bin of [p.etcd, p.etcdctl]) if (!existsSync(bin)) throw new Error(`${bin} is missing after ${script}`);
  return p;
}
