/**
 * The configuration schema: every section and key Tempest understands, with its type, default and
 * a one-line meaning. The loader validates against this table and TempestConfig is derived from it,
 * so a key added here is typed, validated and defaulted everywhere at once.
 */

/** How a relative string path is made absolute after loading. */
export type PathBase = 'cwd' | 'data_dir';

export type KeySpec =
  | { readonly type: 'string'; readonly default: string; readonly doc: string; readonly resolve?: PathBase }
  | { readonly type: 'ip'; readonly default: string; readonly doc: string }
  | { readonly type: 'port'; readonly default: number; readonly doc: string }
  | { readonly type: 'uint'; readonly default: number; readonly min: number; readonly max: number; readonly doc: string }
  | { readonly type: 'bytes'; readonly default: number; readonly min: number; readonly max: number; readonly doc: string }
  | { readonly type: 'bool'; readonly default: boolean; readonly doc: string }
  | { readonly type: 'enum'; readonly default: string; readonly values: readonly string[]; readonly doc: string };

export const PORT_MIN = 1;
export const PORT_MAX = 65535;

const TWO_GIB_BYTES = 2 ** 31;
const ONE_TIB_BYTES = 2 ** 40;

export const SCHEMA = {
  DERECHO: {
    leader_ip: { type: 'ip', default: '127.0.0.1', doc: 'IP address of the initial leader (the member every other member joins through)' },
    leader_gms_port: { type: 'port', default: 23580, doc: "the initial leader's group-membership (GMS) port" },
    leader_external_port: { type: 'port', default: 32645, doc: "the initial leader's port for external clients" },
    local_id: { type: 'uint', default: 0, min: 0, max: 1023, doc: "this member's node id, unique in the group" },
    local_ip: { type: 'ip', default: '127.0.0.1', doc: 'IP address this member binds and advertises' },
    gms_port: { type: 'port', default: 23580, doc: 'port for group membership: joins, view changes, failure reports' },
    state_transfer_port: { type: 'port', default: 28366, doc: 'port over which a joining member receives replicated state' },
    sst_port: { type: 'port', default: 37683, doc: 'port for setting up the shared state table (SST) connections' },
    rdmc_port: { type: 'port', default: 31675, doc: 'port for setting up RDMC (large-message multicast) connections' },
    external_port: { type: 'port', default: 32645, doc: 'port serving external (non-member) clients' },
    data_dir: { type: 'string', default: 'data/node0', resolve: 'cwd', doc: "this member's data directory (relative paths are under the working directory)" },
    max_payload_size: { type: 'bytes', default: 33554432, min: 1, max: TWO_GIB_BYTES, doc: 'largest message a multicast send may carry' },
    max_smc_payload_size: { type: 'bytes', default: 10240, min: 1, max: 1048576, doc: 'messages up to this size go by SMC (small-message multicast), larger ones by RDMC; at most max_payload_size' },
    block_size: { type: 'bytes', default: 1048576, min: 4096, max: 268435456, doc: 'chunk size RDMC splits large messages into' },
    window_size: { type: 'uint', default: 64, min: 1, max: 65536, doc: 'multicast messages a sender may have in flight per subgroup, in messages' },
    timeout_ms: { type: 'uint', default: 1000, min: 10, max: 600000, doc: 'silence after which a member is suspected to have failed, in milliseconds' },
    heartbeat_ms: { type: 'uint', default: 100, min: 1, max: 60000, doc: 'interval between liveness heartbeats, in milliseconds; less than timeout_ms' },
    rdmc_send_algorithm: {
      type: 'enum',
      default: 'binomial_send',
      values: ['binomial_send', 'sequential_send', 'chain_send', 'tree_send'],
      doc: 'dissemination pattern RDMC uses for large messages',
    },
    max_p2p_request_payload_size: { type: 'bytes', default: 1048576, min: 1, max: TWO_GIB_BYTES, doc: 'largest peer-to-peer request a member or external client may send' },
    max_p2p_reply_payload_size: { type: 'bytes', default: 1048576, min: 1, max: TWO_GIB_BYTES, doc: 'largest reply to a multicast or peer-to-peer request' },
    p2p_window_size: { type: 'uint', default: 16, min: 1, max: 65536, doc: 'peer-to-peer requests in flight per peer, in messages' },
    disable_partitioning_safety: { type: 'bool', default: false, doc: 'allow a minority partition to keep running (unsafe: risks split brain)' },
  },
  RDMA: {
    provider: { type: 'enum', default: 'tcp', values: ['tcp', 'sockets', 'verbs'], doc: 'libfabric provider (the class of network device)' },
    domain: { type: 'string', default: 'lo', doc: 'libfabric domain: the specific NIC or network interface' },
    tx_depth: { type: 'uint', default: 256, min: 1, max: 65536, doc: 'send operations that may await completion before sends block' },
    rx_depth: { type: 'uint', default: 256, min: 1, max: 65536, doc: 'receive operations that may be posted at once' },
  },
  PERS: {
    file_path: { type: 'string', default: '.plog', resolve: 'data_dir', doc: 'directory of the persistent logs (relative paths are under data_dir)' },
    ramdisk_path: { type: 'string', default: '/dev/shm/tempest', resolve: 'cwd', doc: 'directory for volatile, memory-backed logs' },
    reset: { type: 'bool', default: false, doc: 'delete all persistent logs at start-up (destroys data)' },
    segment_size: { type: 'bytes', default: 67108864, min: 65536, max: 4294967296, doc: 'size at which a log starts a new segment file; retention drops whole segments' },
    retain_entries: { type: 'uint', default: 10000000, min: 0, max: 9007199254740991, doc: 'versions each log keeps (older ones are trimmed in the background); 0 keeps all' },
    retain_ms: { type: 'uint', default: 0, min: 0, max: 9007199254740991, doc: 'age after which versions are trimmed in the background, in milliseconds; 0 keeps all' },
  },
  HTTP: {
    enabled: { type: 'bool', default: true, doc: 'serve the HTTP blob API from this member' },
    host: { type: 'ip', default: '127.0.0.1', doc: 'IP address the HTTP API listens on' },
    port: { type: 'port', default: 8080, doc: 'TCP port the HTTP API listens on' },
    max_blob_size: { type: 'bytes', default: 5368709120, min: 1, max: ONE_TIB_BYTES, doc: 'largest blob an upload may carry; larger ones get 413' },
  },
  STORE: {
    shards: { type: 'uint', default: 1, min: 1, max: 1024, doc: 'shards the store subgroup splits keys over (by hash); fixed while data exists' },
    members_per_shard: { type: 'uint', default: 3, min: 1, max: 255, doc: 'replicas of each shard (each holds every byte of its keys)' },
    upload_window: { type: 'uint', default: 8, min: 1, max: 64, doc: 'chunks of one upload in flight at once (memory per upload is about this many block_size chunks)' },
    stable_wait_ms: { type: 'uint', default: 10000, min: 100, max: 600000, doc: 'longest a read at a past time waits for that time to become stable in every shard, in milliseconds' },
    chunk_grace_ms: { type: 'uint', default: 600000, min: 0, max: 9007199254740991, doc: 'age after which a chunk no version refers to (an aborted upload) is collected, in milliseconds' },
    collect_interval_ms: { type: 'uint', default: 60000, min: 100, max: 86400000, doc: 'how often each shard looks for unreferenced chunks to collect, in milliseconds' },
  },
  FUSE: {
    enabled: { type: 'bool', default: true, doc: 'mount the file system view on this member' },
    mountpoint: { type: 'string', default: 'mnt', resolve: 'cwd', doc: 'directory to mount on (relative paths are under the working directory)' },
    timeout_ms: { type: 'uint', default: 30000, min: 1000, max: 3600000, doc: 'longest a file-system operation waits for the store before failing with EIO, in milliseconds' },
  },
} as const satisfies Record<string, Record<string, KeySpec>>;

export type Schema = typeof SCHEMA;
export type SectionName = keyof Schema;

type ValueOf<S> = S extends { type: 'bool' }
  ? boolean
  : S extends { type: 'port' | 'uint' | 'bytes' }
    ? number
    : S extends { type: 'enum'; values: readonly (infer V)[] }
      ? V
      : string;

/** A loaded configuration. Paths (data_dir, file_path, ramdisk_path, mountpoint) are absolute. */
export type TempestConfig = {
  -readonly [S in SectionName]: { -readonly [K in keyof Schema[S]]: ValueOf<Schema[S][K]> };
} & {
  /** Absolute path of the file that was loaded, or null when running on defaults. */
  source: string | null;
};

/** The schema with string indexing, for code that looks keys up by name. */
export const SCHEMA_BY_NAME: Readonly<Record<string, Readonly<Record<string, KeySpec>>>> = SCHEMA;

/** What a valid value of `spec` looks like, for error messages and the commented defaults file. */
export function expectation(spec: KeySpec): string {
  switch (spec.type) {
    case 'string':
      return 'a non-empty string';
    case 'ip':
      return 'an IPv4 or IPv6 address';
    case 'port':
      return `a port ${PORT_MIN}..${PORT_MAX}`;
    case 'uint':
      return `an integer ${spec.min}..${spec.max}`;
    case 'bytes':
      return `a size in bytes ${spec.min}..${spec.max}`;
    case 'bool':
      return 'true or false';
    case 'enum':
      return `one of ${spec.values.join(', ')}`;
  }
}
