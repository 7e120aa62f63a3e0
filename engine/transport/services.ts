/**
 * Service ids carried in the top 8 bits of RMA immediate data, so one completion queue serves
 * every protocol. One place lists them all so two layers never pick the same id.
 */
export const Service = {
  /** Connection warm-up writes when a mesh forms. */
  Mesh: 1,
  /** Credit returns of the point-to-point messenger. */
  MessengerCredit: 2,
  /** Shared state table row pushes. */
  Sst: 3,
  /** Small-message multicast records (engine/multicast/smc.ts). */
  Smc: 4,
  /** Large-message multicast blocks (engine/multicast/rdmc.ts). */
  Rdmc: 5,
  /** 8..15: membership tables of views, one per epoch (engine/membership/view-instance.ts). */
  FirstViewTable: 8,
  /** 16..127: shard tables, SMC and RDMC of views, by epoch and shard (view-instance.ts). */
  FirstViewShard: 16,
  /** 128..255 are left to applications and tests. */
  FirstApplication: 128,
} as const;
