// The simulated network: every message gets a random delay (so messages reorder), and may be
// dropped or duplicated. Links can be cut one direction at a time, which gives full partitions,
// isolated nodes and asymmetric cuts alike.

import type { NodeId } from '../src/index.js';
import type { Rng } from './rng.js';

export interface NetworkConfig {
  readonly dropRate: number;
  readonly duplicateRate: number;
  readonly minDelay: number;
  readonly maxDelay: number;
  /** Some messages are held much longer, to reorder across heartbeats and elections. */
  readonly slowRate: number;
  readonly slowMaxDelay: number;
}

export const DEFAULT_NETWORK: NetworkConfig = {
  dropRate: 0.03,
  duplicateRate: 0.02,
  minDelay: 1,
  maxDelay: 8,
  slowRate: 0.04,
  slowMaxDelay: 80,
};

export class Network {
  private readonly cut = new Set<string>();

  constructor(
    private readonly rng: Rng,
    private readonly cfg: NetworkConfig = DEFAULT_NETWORK,
  ) {}

  /** The delays at which copies of a message arrive: none if dropped, two if duplicated. */
  delays(from: NodeId, to: NodeId): number[] {
    if (!this.connected(from, to) || this.rng.chance(this.cfg.dropRate)) return [];
    const one = () =>
      this.rng.chance(this.cfg.slowRate)
        ? this.rng.between(this.cfg.maxDelay, this.cfg.slowMaxDelay)
        : this.rng.between(this.cfg.minDelay, this.cfg.maxDelay);
    return this.rng.chance(this.cfg.duplicateRate) ? [one(), one()] : [one()];
  }

  connected(from: NodeId, to: NodeId): boolean {
    return !this.cut.has(`${from}>${to}`);
  }

  cutOneWay(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`);
  }

  /** Splits the nodes into two sides that cannot talk to each other. */
  partition(side: readonly NodeId[], rest: readonly NodeId[]): void {
    for (const a of side) {
      for (const b of rest) {
        this.cutOneWay(a, b);
        this.cutOneWay(b, a);
      }
    }
  }

  heal(): void {
    this.cut.clear();
  }

  get cutLinks(): number {
    return this.cut.size;
  }
}
