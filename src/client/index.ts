export { createClient, ServiceClient } from './client.js';
export type { ClientOptions, ClientRequest, ClientResponse } from './client.js';
export type { Step, Dispatch } from '../upstream/upstream.js';
export { currentDeadline, runWithDeadline, deadlineOf, TIMEOUT_HEADER } from '../core/deadline.js';
