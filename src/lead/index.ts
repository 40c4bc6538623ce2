export { lead, Leader, DEFAULT_LEAD_TTL_MS } from './election.js';
export type { LeadOptions } from './election.js';
export { MemoryLeaseStore } from './memory.js';
export { postgresLeaseStore, PostgresLeaseStore } from './postgres.js';
export type { PostgresLeaseStoreOptions } from './postgres.js';
export type { LeaseStore, LeaderState, Term } from './types.js';
export { etcdLeaseStore, EtcdLeaseStore } from './etcd.js';
