import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ABOVE_ROOT, FRAGMENT, MALFORMED_ESCAPE, normalizePath } from '../src/core/path.js';
import { isValidAuthority, splitAbsoluteTarget } from '../src/gateway/authority.js';

/** Unit tests of what the gateway routes by: the normalized path and the authority. */

test('a path already in normal form comes back as it is', () => {
  for (const path of ['/', '/a', '/a/b/', '/api/users?x=1', '/.well-known/x', '/a/...', '/a/..b', '/a/.b/', '/a.b/c.', '/~user-1_x.y', '/a?q=/../%2e//', '/x:y@z!$&\'()*+,;=']) {
    assert.equal(normalizePath(path), path, path);
  }
});

test('dot segments are removed (RFC 3986 §5.2.4), percent-encoded ones too', () => {
  const cases: Array<[string, string]> = [
    ['/x/../admin', '/admin'],
    ['/./admin', '/admin'],
    ['/a/./b/../c', '/a/c'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/a/..', '/'],
    ['/x/%2e%2e/admin', '/admin'],
    ['/x/%2E%2e/admin', '/admin'],
    ['/x/.%2e/admin', '/admin'],
    ['/%2e/admin', '/admin'],
    ['/api/../admin/p', '/admin/p'],
    ['/a/b/../../c?x=../y', '/c?x=../y'],
  ];
  for (const [input, expected] of cases) assert.equal(normalizePath(input), expected, input);
});

test('runs of slashes are merged, a trailing slash is kept', () => {
  const cases: Array<[string, string]> = [
    ['//admin', '/admin'],
    ['/a//b', '/a/b'],
    ['/a///b//', '/a/b/'],
    ['//', '/'],
    ['/a//?q=//', '/a/?q=//'],
  ];
  for (const [input, expected] of cases) assert.equal(normalizePath(input), expected, input);
});

test('escapes of unreserved characters are decoded, others kept with upper-case hex, %2F is no separator', () => {
  const cases: Array<[string, string]> = [
    ['/%61dmin', '/admin'],
    ['/%7Euser/%41%5a%30%2D%2E%5F%7e', '/~user/AZ0-._~'],
    ['/a%2fb', '/a%2Fb'],
    ['/a%2F..%2Fb', '/a%2F..%2Fb'],
    ['/..%2f/x', '/..%2F/x'],
    ['/sp%20ace/%c3%a9', '/sp%20ace/%C3%A9'],
    ['/%25%32%65', '/%252e'],
    ['/a?%61=%2e', '/a?%61=%2e'],
  ];
  for (const [input, expected] of cases) assert.equal(normalizePath(input), expected, input);
});

test('a path that climbs above the root, a malformed escape or a fragment is refused', () => {
  for (const path of ['/..', '/../x', '/%2e%2e/admin', '/a/../../b', '/.%2E']) assert.equal(normalizePath(path), ABOVE_ROOT, path);
  for (const path of ['/%', '/a%', '/a%2', '/a%zz', '/a%2g/b', '/%%32e', '/a%?x']) assert.equal(normalizePath(path), MALFORMED_ESCAPE, path);
  for (const path of ['/a#b', '/a?x#y', '/a/%41#']) assert.equal(normalizePath(path), FRAGMENT, path);
});

test('a Host value is an RFC 3986 host[:port] without userinfo', () => {
  for (const host of ['example.com', 'EXAMPLE.com:8080', 'a-b.c_d~e', 'example.com.', '127.0.0.1', '127.0.0.1:80', '[::1]', '[::1]:8080', '[2001:db8::ff00:42:8329]', 'x:', 'caf%C3%A9.example', "a!$&'()*+,;=b", 'h:65535']) {
    assert.equal(isValidAuthority(host), true, host);
  }
  for (const host of ['', ':80', 'u@h', 'user:pw@host', 'a b', 'a\tb', 'h/p', 'h?q', 'h#f', 'h\\x', '[::1', '[zz]', '[::1]x', '[::1]:x', 'h:8o', 'h:65536', 'h:123456', 'h:1:2', 'é.example', 'h%zz', 'h%4', '"h"', 'h<x>', 'a{b}']) {
    assert.equal(isValidAuthority(host), false, JSON.stringify(host));
  }
});

test('an absolute-form target splits into authority and path', () => {
  assert.deepEqual(splitAbsoluteTarget('http://other/x?y'), { authority: 'other', path: '/x?y' });
  assert.deepEqual(splitAbsoluteTarget('HTTPS://Other:8443'), { authority: 'Other:8443', path: '/' });
  assert.deepEqual(splitAbsoluteTarget('http://h?q=1'), { authority: 'h', path: '/?q=1' });
  assert.deepEqual(splitAbsoluteTarget('http://[::1]:80/a'), { authority: '[::1]:80', path: '/a' });
  for (const target of ['ftp://h/x', 'http:/h/x', 'http://', 'http:///x', 'http://u@h/x', 'http://h h/x', '*', 'h/x']) {
    assert.equal(splitAbsoluteTarget(target), undefined, target);
  }
});
