/**
 * Recognizes the header names the proxy treats specially without lower-casing (allocating)
 * each name: a switch on the length, then one case-insensitive compare. Every other header
 * is H.OTHER and passes through untouched.
 */
export const H = {
  OTHER: 0,
  // hop-by-hop (RFC 9110 §7.6.1) and friends
  CONNECTION: 1, KEEP_ALIVE: 2, PROXY_CONNECTION: 3, TRANSFER_ENCODING: 4, UPGRADE: 5, TE: 6,
  TRAILER: 7, PROXY_AUTHORIZATION: 8, PROXY_AUTHENTICATE: 9, EXPECT: 10, HTTP2_SETTINGS: 11,
  // forwarding facts only a trusted proxy may set
  X_FORWARDED_FOR: 12, X_FORWARDED_PROTO: 13, X_FORWARDED_HOST: 14, FORWARDED: 15, X_REAL_IP: 16,
  // read by the proxy, then passed on
  HOST: 17, X_REQUEST_ID: 18, CONTENT_LENGTH: 19, COOKIE: 20,
  // set by the gateway itself: a client's value is dropped
  X_TANDEM_TIMEOUT_MS: 21,
  // W3C trace context: the gateway sends its own span as the parent
  TRACEPARENT: 22,
} as const;

export type HeaderKind = (typeof H)[keyof typeof H];

/** True when `name` equals the lower-case ASCII `lower`, ignoring case. Same length assumed. */
function is(name: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    // OR 0x20 folds A-Z onto a-z and leaves '-' alone; header names cannot hold the control
    // characters that would also fold onto these letters.
    if ((name.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

export function headerKind(name: string): HeaderKind {
  switch (name.length) {
    case 2: return is(name, 'te') ? H.TE : H.OTHER;
    case 4: return is(name, 'host') ? H.HOST : H.OTHER;
    case 6: return is(name, 'cookie') ? H.COOKIE : is(name, 'expect') ? H.EXPECT : H.OTHER;
    case 7: return is(name, 'upgrade') ? H.UPGRADE : is(name, 'trailer') ? H.TRAILER : H.OTHER;
    case 9: return is(name, 'forwarded') ? H.FORWARDED : is(name, 'x-real-ip') ? H.X_REAL_IP : H.OTHER;
    case 10: return is(name, 'connection') ? H.CONNECTION : is(name, 'keep-alive') ? H.KEEP_ALIVE : H.OTHER;
    case 11: return is(name, 'traceparent') ? H.TRACEPARENT : H.OTHER;
    case 12: return is(name, 'x-request-id') ? H.X_REQUEST_ID : H.OTHER;
    case 14: return is(name, 'content-length') ? H.CONTENT_LENGTH : is(name, 'http2-settings') ? H.HTTP2_SETTINGS : H.OTHER;
    case 15: return is(name, 'x-forwarded-for') ? H.X_FORWARDED_FOR : H.OTHER;
    case 16: return is(name, 'proxy-connection') ? H.PROXY_CONNECTION : is(name, 'x-forwarded-host') ? H.X_FORWARDED_HOST : H.OTHER;
    case 17: return is(name, 'transfer-encoding') ? H.TRANSFER_ENCODING : is(name, 'x-forwarded-proto') ? H.X_FORWARDED_PROTO : H.OTHER;
    case 18: return is(name, 'proxy-authenticate') ? H.PROXY_AUTHENTICATE : H.OTHER;
    case 19: return is(name, 'proxy-authorization') ? H.PROXY_AUTHORIZATION : is(name, 'x-tandem-timeout-ms') ? H.X_TANDEM_TIMEOUT_MS : H.OTHER;
    default: return H.OTHER;
  }
}

/** True for `keep-alive`, `close` and `upgrade` (any case, surrounding blanks): the Connection values that name no header. */
export function connectionNamesNoHeader(value: string): boolean {
  const v = value.trim();
  return (v.length === 10 && is(v, 'keep-alive')) || (v.length === 5 && is(v, 'close')) || (v.length === 7 && is(v, 'upgrade'));
}
