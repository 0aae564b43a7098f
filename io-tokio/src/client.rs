//! A small blocking HTTP/1.1 client for the `tribune` CLI commands.
//!
//! Each CLI invocation makes one or a handful of requests and exits, so a
//! blocking client over `std::net::TcpStream` is enough and keeps the CLI path
//! free of the async runtime and of extra dependencies. One connection per
//! request (`Connection: close`) avoids connection-reuse bookkeeping.
//!
//! The response parser reads from any `impl Read` so it can be tested without
//! sockets; it understands `Content-Length`, chunked transfer coding, and
//! read-until-close bodies.
//!
//! Error texts imitate what Consul's Go client prints (for example
//! `Get "http://127.0.0.1:8500/v1/kv/foo": dial tcp 127.0.0.1:8500: connect:
//! connection refused`) because users and scripts recognise them.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Consul's default HTTP API address.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8500";
/// How long to wait for the TCP handshake before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Blocking queries may be held for up to `max_query_time` (10 min) plus
/// jitter, so the default read timeout leaves generous room above that.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// A well-behaved agent answers with a few hundred header bytes; the cap
/// keeps a broken or hostile peer from making the CLI buffer without bound.
const HEAD_BYTES_MAX: u64 = 64 * 1024;
/// Chunk-size lines are short; anything longer is a protocol error.
const CHUNK_LINE_BYTES_MAX: u64 = 4 * 1024;

/// Blocking HTTP client bound to one agent address and optional ACL token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpClient {
    /// `host:port` (IPv6 hosts in brackets); never carries a scheme.
    addr: String,
    token: Option<String>,
    read_timeout: Duration,
}

impl HttpClient {
    /// Builds a client for `addr` (`host:port`, optionally `http://`-prefixed).
    pub fn new(addr: &str, token: Option<String>) -> Result<HttpClient, String> {
        Ok(HttpClient {
            addr: normalize_addr(addr)?,
            token: token.filter(|t| !t.is_empty()),
            read_timeout: DEFAULT_READ_TIMEOUT,
        })
    }

    /// Resolves the agent address and token the way Consul's CLI does.
    ///
    /// Address: `flag` (the `-http-addr` value), then `CONSUL_HTTP_ADDR`, then
    /// `TRIBUNE_HTTP_ADDR`, then `127.0.0.1:8500`. Token: `CONSUL_HTTP_TOKEN`,
    /// `CONSUL_HTTP_TOKEN_FILE`, `TRIBUNE_HTTP_TOKEN`,
    /// `TRIBUNE_HTTP_TOKEN_FILE`; a `-token` flag overrides via
    /// [`HttpClient::with_token`]. HTTPS is refused with an explanation rather
    /// than silently sending plaintext to a TLS port.
    pub fn from_env_and_flag(flag: Option<&str>) -> Result<HttpClient, String> {
        let addr = flag
            .map(str::to_string)
            .or_else(|| env_nonempty("CONSUL_HTTP_ADDR"))
            .or_else(|| env_nonempty("TRIBUNE_HTTP_ADDR"))
            .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_string());
        for var in ["CONSUL_HTTP_SSL", "TRIBUNE_HTTP_SSL"] {
            if env_nonempty(var).is_some_and(|v| is_go_true(&v)) {
                return Err(format!(
                    "{var}=true requests HTTPS, which tribune's CLI client does not support"
                ));
            }
        }
        let sources = [
            ("CONSUL_HTTP_TOKEN", false),
            ("CONSUL_HTTP_TOKEN_FILE", true),
            ("TRIBUNE_HTTP_TOKEN", false),
            ("TRIBUNE_HTTP_TOKEN_FILE", true),
        ];
        let token = match sources
            .iter()
            .find_map(|&(var, is_file)| env_nonempty(var).map(|value| (value, is_file)))
        {
            Some((path, true)) => Some(read_token_file(&path)?),
            Some((token, false)) => Some(token),
            None => None,
        };
        HttpClient::new(&addr, token)
    }

    /// Replaces the token when `token` is a non-empty `Some` (a `-token`
    /// flag beats env); like Consul, an empty `-token=` keeps the env token.
    pub fn with_token(mut self, token: Option<String>) -> HttpClient {
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            self.token = Some(token);
        }
        self
    }

    /// Overrides the read timeout (default [`DEFAULT_READ_TIMEOUT`]).
    pub fn with_read_timeout(mut self, timeout: Duration) -> HttpClient {
        self.read_timeout = timeout;
        self
    }

    /// The `host:port` this client talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The ACL token sent as `X-Consul-Token`, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The URL shown in error messages for `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    /// Sends one request and reads the whole response. Any HTTP status is
    /// `Ok`; use [`Response::into_result`] to turn non-2xx into an error.
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        self.request_with_headers(method, path_and_query, &[], body)
    }

    /// [`HttpClient::request`] with extra header lines (agent watch HTTP
    /// handlers send `X-Consul-Index` and the configured headers).
    pub fn request_with_headers(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        let target = Target {
            method: method.to_string(),
            url: self.url(path_and_query),
        };
        let mut stream = self.connect(&target)?;
        let io_error = |source: io::Error| ClientError::Io {
            target: target.clone(),
            source,
        };
        stream
            .set_read_timeout(Some(self.read_timeout))
            .map_err(io_error)?;
        stream
            .set_write_timeout(Some(self.read_timeout))
            .map_err(io_error)?;
        let mut message = self.request_head(method, path_and_query, headers, body.map(<[u8]>::len));
        message.extend_from_slice(body.unwrap_or_default());
        stream.write_all(&message).map_err(io_error)?;
        stream.flush().map_err(io_error)?;
        read_response(stream, method.eq_ignore_ascii_case("HEAD")).map_err(io_error)
    }

    /// Convenience wrapper: GET with no body.
    pub fn get(&self, path_and_query: &str) -> Result<Response, ClientError> {
        self.request("GET", path_and_query, None)
    }

    fn connect(&self, target: &Target) -> Result<TcpStream, ClientError> {
        let resolved: Vec<SocketAddr> = match self.addr.to_socket_addrs() {
            Ok(addrs) => addrs.collect(),
            Err(source) => return Err(self.resolve_error(target, source)),
        };
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no such host");
        if resolved.is_empty() {
            return Err(self.resolve_error(target, last_error));
        }
        for socket_addr in resolved {
            match TcpStream::connect_timeout(&socket_addr, CONNECT_TIMEOUT) {
                Ok(stream) => return Ok(stream),
                Err(err) => last_error = err,
            }
        }
        Err(ClientError::Connect {
            target: target.clone(),
            addr: self.addr.clone(),
            source: last_error,
        })
    }

    fn resolve_error(&self, target: &Target, source: io::Error) -> ClientError {
        ClientError::Resolve {
            target: target.clone(),
            host: split_host(&self.addr).to_string(),
            source,
        }
    }

    fn request_head(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body_len: Option<usize>,
    ) -> Vec<u8> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tribune/{}\r\n\
             Accept: */*\r\nConnection: close\r\n",
            self.addr,
            env!("CARGO_PKG_VERSION")
        );
        // GET/HEAD without a body send no length; every other request states
        // it, so servers never wait for a body that isn't coming.
        let bodiless = method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD");
        if body_len.is_some() || !bodiless {
            head.push_str(&format!("Content-Length: {}\r\n", body_len.unwrap_or(0)));
        }
        if let Some(token) = &self.token {
            head.push_str(&format!("X-Consul-Token: {token}\r\n"));
        }
        for (name, value) in headers {
            // Header text comes from config; line breaks would forge headers.
            if !name.contains(['\r', '\n', ':']) && !value.contains(['\r', '\n']) {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

/// Go's `strconv.ParseBool` spellings of true, as Consul reads its env vars.
fn is_go_true(text: &str) -> bool {
    matches!(text.trim(), "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// Reads an ACL token file the way Consul does: whole file, whitespace-trimmed.
pub fn read_token_file(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_string())
        .map_err(|err| format!("Error loading token file {path}: {err}"))
}

/// Strips an `http://` scheme and any path; rejects schemes we can't speak.
/// A missing port means 80, as it would in the equivalent `http://` URL.
fn normalize_addr(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_string(), trimmed),
    };
    if scheme != "http" {
        // Notably https:// and unix://, which Consul's client also accepts.
        return Err(format!(
            "{scheme}:// address {trimmed:?} is not supported by tribune's CLI client; use http://"
        ));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("invalid HTTP address {raw:?}: missing host"));
    }
    let has_port = if authority.starts_with('[') {
        authority.contains("]:")
    } else {
        authority.matches(':').count() == 1
    };
    if has_port {
        return Ok(authority.to_string());
    }
    if authority.contains(':') && !authority.starts_with('[') {
        // A bare IPv6 address: bracket it so `host:port` stays unambiguous.
        return Ok(format!("[{authority}]:80"));
    }
    Ok(format!("{authority}:80"))
}

/// The host part of a `host:port` authority (brackets removed).
fn split_host(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Method and URL of a request, kept for error messages. Displays as Go's
/// `url.Error` prefix: `Get "http://127.0.0.1:8500/v1/kv/foo"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub method: String,
    pub url: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Go prints the method capitalized: "Get", "Put", "Delete".
        let lower = self.method.to_ascii_lowercase();
        let mut chars = lower.chars();
        if let Some(first) = chars.next() {
            write!(f, "{}{}", first.to_ascii_uppercase(), chars.as_str())?;
        }
        write!(f, " {:?}", self.url)
    }
}

/// A complete HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// `X-Consul-Index`, the blocking-query index, when present and numeric.
    pub fn consul_index(&self) -> Option<u64> {
        self.header("X-Consul-Index")?.trim().parse().ok()
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Turns a non-2xx response into [`ClientError::Status`], which prints
    /// like the Go client's `Unexpected response code: 500 (body)`.
    pub fn into_result(self) -> Result<Response, ClientError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(ClientError::Status {
                status: self.status,
                body: String::from_utf8_lossy(&self.body).trim_end().to_string(),
            })
        }
    }

    /// The body as text (invalid UTF-8 replaced), for bool/JSON answers.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request failed. `Display` mimics the Go client's wording.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The agent's host name did not resolve.
    Resolve {
        target: Target,
        host: String,
        source: io::Error,
    },
    /// No TCP connection could be made (refused, unreachable, timeout).
    Connect {
        target: Target,
        addr: String,
        source: io::Error,
    },
    /// The connection broke, timed out, or the response was malformed.
    Io { target: Target, source: io::Error },
    /// The agent answered with a non-2xx status.
    Status { status: u16, body: String },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (target, detail) = match self {
            ClientError::Status { status, body } => {
                return write!(f, "Unexpected response code: {status} ({body})");
            }
            ClientError::Resolve {
                target,
                host,
                source,
            } => (
                target,
                format!("dial tcp: lookup {host}: {}", io_error_text(source)),
            ),
            ClientError::Connect {
                target,
                addr,
                source,
            } => (
                target,
                format!("dial tcp {addr}: connect: {}", io_error_text(source)),
            ),
            ClientError::Io { target, source } => (target, io_error_text(source)),
        };
        write!(f, "{target}: {detail}")
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Resolve { source, .. }
            | ClientError::Connect { source, .. }
            | ClientError::Io { source, .. } => Some(source),
            ClientError::Status { .. } => None,
        }
    }
}

/// Renders an I/O error the way Go's net package words it, dropping Rust's
/// "(os error N)" suffix so messages read like Consul's.
pub fn io_error_text(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => return "connection refused".to_string(),
        io::ErrorKind::ConnectionReset => return "connection reset by peer".to_string(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => return "i/o timeout".to_string(),
        io::ErrorKind::UnexpectedEof => return "EOF".to_string(),
        _ => {}
    }
    let text = err.to_string();
    let text = match text.find(" (os error") {
        Some(cut) => &text[..cut],
        None => text.as_str(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().collect::<String>() + chars.as_str(),
        None => String::new(),
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "unexpected EOF")
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Reads one HTTP/1.x response from `reader`. Interim 1xx responses are
/// skipped. `is_head` marks a HEAD request, whose response has no body.
pub fn read_response(reader: impl Read, is_head: bool) -> io::Result<Response> {
    let mut reader = BufReader::new(reader);
    loop {
        let (status, headers) = read_head(&mut reader)?;
        // 100 Continue / 102 Processing precede the real answer; 101 would
        // switch protocols, which we never ask for.
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let body = read_body(&mut reader, status, &headers, is_head)?;
        return Ok(Response {
            status,
            headers,
            body,
        });
    }
}

type Headers = Vec<(String, String)>;

/// Reads a CRLF- (or LF-) terminated line of at most `limit` bytes.
fn read_line(reader: &mut impl BufRead, limit: u64) -> io::Result<String> {
    let mut line = Vec::new();
    reader.take(limit).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        if line.len() as u64 >= limit {
            return Err(invalid("response line too long"));
        }
        return Err(eof());
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| invalid("response head is not valid UTF-8"))
}

fn read_head(reader: &mut impl BufRead) -> io::Result<(u16, Headers)> {
    let mut budget = HEAD_BYTES_MAX;
    let status_line = read_line(reader, budget)?;
    budget = budget.saturating_sub(status_line.len() as u64 + 2);
    let status = parse_status_line(&status_line)?;
    let mut headers: Headers = Vec::new();
    loop {
        if budget == 0 {
            return Err(invalid("response headers too large"));
        }
        let line = read_line(reader, budget)?;
        budget = budget.saturating_sub(line.len() as u64 + 2);
        if line.is_empty() {
            return Ok((status, headers));
        }
        if line.starts_with([' ', '\t']) {
            // Obsolete line folding: a continuation of the previous value.
            let Some((_, value)) = headers.last_mut() else {
                return Err(invalid("header continuation without a header"));
            };
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid(format!("malformed header line {line:?}")));
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
}

fn parse_status_line(line: &str) -> io::Result<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("malformed HTTP response {line:?}")));
    }
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("malformed HTTP status code {code:?}")));
    }
    code.parse()
        .map_err(|_| invalid(format!("malformed HTTP status code {code:?}")))
}

fn header_values<'h>(headers: &'h Headers, name: &'h str) -> impl Iterator<Item = &'h str> {
    headers
        .iter()
        .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

fn read_body(
    reader: &mut impl BufRead,
    status: u16,
    headers: &Headers,
    is_head: bool,
) -> io::Result<Vec<u8>> {
    if is_head || status == 204 || status == 304 {
        return Ok(Vec::new());
    }
    // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
    let chunked = header_values(headers, "Transfer-Encoding")
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .last()
        .is_some_and(|coding| coding.eq_ignore_ascii_case("chunked"));
    if chunked {
        return read_chunked(reader);
    }
    match content_length(headers)? {
        Some(length) => read_exactly(reader, length),
        None => {
            let mut body = Vec::new();
            reader.read_to_end(&mut body)?;
            Ok(body)
        }
    }
}

fn content_length(headers: &Headers) -> io::Result<Option<u64>> {
    let mut length = None;
    for value in header_values(headers, "Content-Length") {
        let parsed: u64 = value
            .trim()
            .parse()
            .map_err(|_| invalid(format!("invalid Content-Length {value:?}")))?;
        if length.is_some_and(|previous| previous != parsed) {
            return Err(invalid("conflicting Content-Length headers"));
        }
        length = Some(parsed);
    }
    Ok(length)
}

/// Reads exactly `length` bytes without trusting `length` for allocation.
fn read_exactly(reader: &mut impl BufRead, length: u64) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    reader.take(length).read_to_end(&mut body)?;
    if (body.len() as u64) < length {
        return Err(eof());
    }
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader, CHUNK_LINE_BYTES_MAX)?;
        // Chunk extensions (";name=value") carry nothing we need.
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("invalid chunk size {size_text:?}")))?;
        if size == 0 {
            break;
        }
        body.extend(read_exactly(reader, size)?);
        if !read_line(reader, CHUNK_LINE_BYTES_MAX)?.is_empty() {
            return Err(invalid("missing CRLF after chunk data"));
        }
    }
    // Trailer fields end with an empty line; their contents are ignored.
    let mut budget = HEAD_BYTES_MAX;
    loop {
        let line = read_line(reader, budget)?;
        if line.is_empty() {
            return Ok(body);
        }
        budget = budget.saturating_sub(line.len() as u64 + 2);
        if budget == 0 {
            return Err(invalid("chunked trailers too large"));
        }
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn percent_encode(text: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if keep(byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-encodes a KV key (or other path tail) for use in a URL path.
/// `/` stays literal because KV keys are hierarchical and the server splits
/// on nothing but the `/v1/kv/` prefix; everything outside RFC 3986's
/// unreserved set is escaped so `?`, `#`, `%`, `+` and spaces survive.
pub fn percent_encode_path(key: &str) -> String {
    percent_encode(key, |byte| is_unreserved(byte) || byte == b'/')
}

/// Percent-encodes a query-string name or value.
pub fn percent_encode_query(value: &str) -> String {
    percent_encode(value, is_unreserved)
}

/// Appends `params` to `path` as a query string. `None` values produce bare
/// keys such as `?recurse`, the form Consul's docs use for switches.
pub fn path_with_query(path: &str, params: &[(&str, Option<String>)]) -> String {
    let mut out = path.to_string();
    for (index, (name, value)) in params.iter().enumerate() {
        out.push(if index == 0 { '?' } else { '&' });
        out.push_str(&percent_encode_query(name));
        if let Some(value) = value {
            out.push('=');
            out.push_str(&percent_encode_query(value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn parse(raw: &[u8]) -> io::Result<Response> {
        read_response(Cursor::new(raw.to_vec()), false)
    }

    #[test]
    fn content_length_body_and_case_insensitive_headers() -> io::Result<()> {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                    X-Consul-Index: 42\r\ncontent-length: 4\r\n\r\ntrueEXTRA";
        let response = parse(raw)?;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"true");
        assert_eq!(response.header("CONTENT-TYPE"), Some("application/json"));
        assert_eq!(response.header("x-consul-index"), Some("42"));
        assert_eq!(response.consul_index(), Some(42));
        assert_eq!(response.header("missing"), None);
        Ok(())
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() -> io::Result<()> {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n\
                    0\r\nX-Trailer: yes\r\n\r\n";
        let response = parse(raw)?;
        assert_eq!(response.body, b"Wikipedia in\r\n\r\nchunks.");
        Ok(())
    }

    #[test]
    fn read_to_eof_without_length_and_lf_only_lines() -> io::Result<()> {
        let response = parse(b"HTTP/1.0 404 Not Found\nServer: x\n\nno such key")?;
        assert_eq!(response.status, 404);
        assert_eq!(response.body, b"no such key");
        Ok(())
    }

    #[test]
    fn interim_responses_are_skipped_and_204_has_no_body() -> io::Result<()> {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let response = parse(raw)?;
        assert_eq!(response.status, 204);
        assert!(response.body.is_empty());
        let head = read_response(
            Cursor::new(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n".to_vec()),
            true,
        )?;
        assert!(head.body.is_empty());
        Ok(())
    }

    #[test]
    fn malformed_responses_are_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        ];
        for raw in cases {
            assert!(parse(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
        let filler = b"X-Filler: 0123456789012345678901234567890123456789\r\n".repeat(2000);
        let oversized = [&b"HTTP/1.1 200 OK\r\n"[..], &filler, b"\r\n"].concat();
        assert!(parse(&oversized).is_err(), "a 100 KB head must be refused");
    }

    #[test]
    fn into_result_reports_status_like_go_client() -> io::Result<()> {
        let raw = b"HTTP/1.1 500 Error\r\nContent-Length: 18\r\n\r\nNo cluster leader\n";
        let err = parse(raw)?.into_result().err().map(|e| e.to_string());
        let expected = "Unexpected response code: 500 (No cluster leader)";
        assert_eq!(err.as_deref(), Some(expected));
        Ok(())
    }

    #[test]
    fn percent_encoding_keeps_slash_and_unreserved() {
        assert_eq!(percent_encode_path("a/b-c_d.e~f"), "a/b-c_d.e~f");
        assert_eq!(
            percent_encode_path("sp ace?q#h%+&=é"),
            "sp%20ace%3Fq%23h%25%2B%26%3D%C3%A9"
        );
        assert_eq!(percent_encode_query("a/b c"), "a%2Fb%20c");
        assert_eq!(
            path_with_query(
                "/v1/kv/x",
                &[("recurse", None), ("dc", Some("dc 1".to_string()))]
            ),
            "/v1/kv/x?recurse&dc=dc%201"
        );
        assert_eq!(path_with_query("/v1/kv/x", &[]), "/v1/kv/x");
    }

    #[test]
    fn addresses_are_normalized() -> Result<(), String> {
        assert_eq!(normalize_addr("127.0.0.1:8500")?, "127.0.0.1:8500");
        assert_eq!(normalize_addr("http://localhost:9/")?, "localhost:9");
        assert_eq!(normalize_addr("HTTP://[::1]:8500")?, "[::1]:8500");
        assert_eq!(normalize_addr("example.com")?, "example.com:80");
        assert_eq!(normalize_addr("::1")?, "[::1]:80");
        assert!(normalize_addr("https://127.0.0.1:8501").is_err());
        assert!(normalize_addr("unix:///tmp/consul.sock").is_err());
        assert!(normalize_addr("http://").is_err());
        Ok(())
    }

    #[test]
    fn request_head_has_length_token_and_close() -> Result<(), String> {
        let client = HttpClient::new("127.0.0.1:8500", Some("secret".into()))?;
        let head = String::from_utf8_lossy(&client.request_head("PUT", "/v1/kv/a", &[], None))
            .into_owned();
        assert!(head.starts_with("PUT /v1/kv/a HTTP/1.1\r\nHost: 127.0.0.1:8500\r\n"));
        assert!(head.contains("Content-Length: 0\r\n"));
        assert!(head.contains("Connection: close\r\n"));
        assert!(head.contains("X-Consul-Token: secret\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
        let get = String::from_utf8_lossy(&client.request_head("GET", "/", &[], None)).into_owned();
        assert!(!get.contains("Content-Length"));
        let kept = client.with_token(Some(String::new())).with_token(None);
        assert_eq!(kept.token(), Some("secret"));
        assert_eq!(kept.with_token(Some("other".into())).token(), Some("other"));
        Ok(())
    }

    #[test]
    fn round_trip_against_a_loopback_server() -> Result<(), Box<dyn std::error::Error>> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = std::thread::spawn(move || -> io::Result<String> {
            let (mut stream, _) = listener.accept()?;
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"hello") {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ntrue\r\n0\r\n\r\n",
            )?;
            Ok(String::from_utf8_lossy(&request).into_owned())
        });
        let client = HttpClient::new(&format!("http://{addr}"), None)?;
        let response = client.request("PUT", "/v1/kv/k?flags=1", Some(b"hello"))?;
        assert_eq!(response.text(), "true");
        let request = server.join().map_err(|_| "server thread panicked")??;
        assert!(request.starts_with("PUT /v1/kv/k?flags=1 HTTP/1.1\r\n"));
        assert!(request.contains("Content-Length: 5\r\n"));
        Ok(())
    }
}
