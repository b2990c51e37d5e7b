// The `http` probe type (spec §3): one HTTP(S) request per run on the shared CurlMulti.
//
// Keys: url (http:// or https:// only), method (GET), header (repeatable, "Name: value";
// the value may be env:NAME), body, expect_status (default 200-299; a list of codes and
// ranges such as "200,204,300-399"), expect_body (a POSIX extended regex searched in the
// body, compiled at parse time), follow_redirects (false; when true at most
// kHttpMaxRedirects, to http/https only), tls_verify (true), ca_file (PEM bundle, relative
// to the config folder), bearer_token_file (sends "Authorization: Bearer <token>"; the
// token is never logged).
//
// Fields: up (the request completed, the status is expected and the body matches),
// latency (total seconds, redirects included), status, body_bytes, cert_expiry (seconds
// until the leaf certificate of the final response expires; https only, negative once
// expired), json.<path> (when the body is a JSON object or array: objects flatten to
// dotted paths "json.a.b", arrays by index "json.a.0"; numbers, bools as 1/0, strings;
// nulls skipped; at most kHttpMaxJsonFields fields, kHttpMaxJsonDepth levels), and the
// phases of the last request in seconds, each one phase on its own (not cumulative):
// phase.dns, phase.connect (TCP), phase.tls (https only), phase.first_byte (request sent
// until the first response byte). A reused connection reports 0 for dns/connect/tls.
//
// Connections: every http probe on a loop shares the CurlMulti's connections, kept open
// and reused; at most CurlMulti::kMaxHostConnections are open to one host at once, and a
// run past that waits for one of them (within its timeout) instead of connecting afresh.
// A probe of an http:// url naming an IP address, GET or HEAD, without a body, credentials
// in the url or follow_redirects runs on PlainHttp instead (probes/plain_http.h): the
// same request, fields and errors at less than half libcurl's CPU per run; phase.dns is 0.
//
// Bounds: a run costs at most the probe's timeout (CURLOPT_TIMEOUT_MS covers DNS,
// connect, TLS, redirects and the body). The body is read up to kHttpMaxBodyBytes; a
// larger body aborts the transfer and the run reports up 0 with "response body exceeds
// the 1 MiB cap" — a health endpoint that big is itself a finding, and stopping early
// keeps a hostile target from costing memory or time. Requests go straight to the target:
// proxy environment variables (http_proxy, ...) are ignored.
#pragma once

#include <cstddef>
#include <memory>

#include "probes/probe.h"

namespace rollguard {

class ProbeKeys;

inline constexpr size_t kHttpMaxBodyBytes = size_t{1} << 20;
inline constexpr int kHttpMaxRedirects = 10;
inline constexpr size_t kHttpMaxJsonFields = 1000;
inline constexpr int kHttpMaxJsonDepth = 32;

// Reads the http keys of a section whose common keys are in `spec`. Errors go to `keys`;
// nullptr when there were any.
std::shared_ptr<const ProbeConfig> ParseHttpProbe(ProbeSpec spec, ProbeKeys& keys);

}  // namespace rollguard
