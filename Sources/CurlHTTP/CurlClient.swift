// HTTP over libcurl for every client in the package (s3:// stores, the Privacy Plane client,
// key release, JSON-RPC): one owner per easy handle, a pool of them (each keeps its connection
// alive, so requests reuse TCP/TLS connections), retries with backoff.
internal import CCurl
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a request uploads.
public enum HTTPBody {
    case none
    /// Bytes borrowed for the duration of `perform` (retried requests send them again).
    case bytes(UnsafeRawBufferPointer)
    /// Bytes pulled from `read` (which returns 0 at the end) as libcurl sends them; `length`
    /// nil sends them chunked. A streamed request is never retried: its bytes are gone.
    case stream(length: Int64?, read: (UnsafeMutableRawBufferPointer) throws -> Int)
}

/// One HTTP request. For SigV4-signed requests the URL's path and query are already
/// URI-encoded the way SigV4 canonicalises them (query parameters sorted by name): libcurl
/// 7.88's CURLOPT_AWS_SIGV4 signs the query exactly as given, without sorting or re-encoding it.
public struct HTTPRequest {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: HTTPBody

    public init(method: String, url: String, headers: [(String, String)] = [], body: HTTPBody = .none) {
        self.method = method; self.url = url; self.headers = headers; self.body = body
    }
}

/// The response: status, headers (names lowercased) and, unless the body went into the
/// caller's buffer, the body (error bodies are capped at 1 MiB, others at
/// `HTTPClientOptions.maxResponseBytes`).
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]
    /// Bytes written into the caller's buffer (2xx responses with a destination only).
    public var received: Int

    public init(status: Int, headers: [String: String] = [:], body: [UInt8] = [], received: Int = 0) {
        self.status = status; self.headers = headers; self.body = body; self.received = received
    }
}

/// A failed transfer: libcurl's code (or minus the HTTP status when retries ran out on one)
/// and message. Never carries credentials.
public struct TransportError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String
    public init(code: Int32, message: String) { self.code = code; self.message = message }
    public var description: String { message }
    /// Connection refused/reset, timeouts, truncated or garbled responses: worth retrying.
    public var isRetryable: Bool {
        switch code {
        case 5, 6: return true   // COULDNT_RESOLVE_PROXY/HOST (transient DNS)
        case 7: return true       // COULDNT_CONNECT
        case 8: return true       // WEIRD_SERVER_REPLY
        case 18: return true      // PARTIAL_FILE (body shorter than Content-Length)
        case 28: return true      // OPERATION_TIMEDOUT (connect timeout, low-speed limit)
        case 35: return true      // SSL_CONNECT_ERROR
        case 52: return true      // GOT_NOTHING
        case 55, 56: return true  // SEND_ERROR, RECV_ERROR (resets)
        case 92: return true      // HTTP2_STREAM
        default: return false
        }
    }
}

/// Exponential backoff with full jitter, bounded in attempts and in total time. A value
/// type: the schedule is tested without I/O.
public struct RetryPolicy: Sendable {
    public var maxAttempts: Int
    public var totalTime: Double
    public var baseDelay: Double = 0.05
    public var maxDelay: Double = 2

    public init(maxAttempts: Int, totalTime: Double, baseDelay: Double = 0.05, maxDelay: Double = 2) {
        self.maxAttempts = maxAttempts; self.totalTime = totalTime; self.baseDelay = baseDelay; self.maxDelay = maxDelay
    }

    /// The pause before attempt `attempt + 1` (attempt counts from 1), or nil to give up.
    /// `elapsed` is the time since the first attempt started; `random` is in [0, 1).
    public func delay(after attempt: Int, elapsed: Double, random: Double) -> Double? {
        guard attempt < maxAttempts else { return nil }
        let cap = min(maxDelay, baseDelay * pow(2, Double(attempt - 1)))
        let d = cap * random
        guard elapsed + d < totalTime else { return nil }
        return d
    }

    /// HTTP statuses that are retried: 5xx server errors and 429 / 503 SlowDown.
    public static func isRetryable(status: Int) -> Bool { status == 429 || status == 500 || status == 502 || status == 503 || status == 504 }
}

/// Owns one CURL easy handle (curl_easy_init / curl_easy_cleanup). Not thread-safe: the pool
/// hands each to one request at a time.
final class CurlEasy {
    let handle: UnsafeMutableRawPointer
    /// CURLOPT_ERRORBUFFER: libcurl writes its message here; it must outlive the handle's use.
    let errorBuffer: UnsafeMutablePointer<CChar>

    init?() {
        guard cce4_curl_global_init() == 0, let h = curl_easy_init() else { return nil }
        handle = h
        errorBuffer = .allocate(capacity: Int(CCE4_CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CCE4_CURL_ERROR_SIZE) + 1)
    }

    deinit { curl_easy_cleanup(handle); errorBuffer.deallocate() }
}

/// The per-transfer state the C callbacks reach through their userdata pointer.
final class TransferContext {
    var status = 0
    var headers = [String: String]()
    var body = [UInt8]()
    var destination: UnsafeMutableRawBufferPointer?
    var received = 0
    var overflow = false
    var upload: UnsafeRawBufferPointer?
    var stream: ((UnsafeMutableRawBufferPointer) throws -> Int)?
    var streamError: (any Error)?
    var uploaded = 0
    var bodyCap = Int.max
    var tooLarge = false
    static let errorBodyCap = 1 << 20

    func reset() {
        status = 0; headers.removeAll(keepingCapacity: true); body.removeAll(keepingCapacity: true)
        received = 0; overflow = false; uploaded = 0
    }
}

private let writeCallback: cce4_curl_data_cb = { ptr, size, nmemb, userdata in
    let ctx = Unmanaged<TransferContext>.fromOpaque(userdata!).takeUnretainedValue()
    let n = size * nmemb
    guard n > 0, let ptr else { return n }
    if (200..<300).contains(ctx.status), let dest = ctx.destination {
        guard ctx.received + n <= dest.count else { ctx.overflow = true; return 0 }
        (dest.baseAddress! + ctx.received).copyMemory(from: ptr, byteCount: n)
        ctx.received += n
    } else if (200..<300).contains(ctx.status) {
        guard ctx.body.count + n <= ctx.bodyCap else { ctx.tooLarge = true; return 0 }
        ctx.body.append(contentsOf: UnsafeRawBufferPointer(start: ptr, count: n))
    } else {
        guard ctx.body.count + n <= TransferContext.errorBodyCap else { return n }
        ctx.body.append(contentsOf: UnsafeRawBufferPointer(start: ptr, count: n))
    }
    return n
}

private let headerCallback: cce4_curl_data_cb = { ptr, size, nmemb, userdata in
    let ctx = Unmanaged<TransferContext>.fromOpaque(userdata!).takeUnretainedValue()
    let n = size * nmemb
    guard let ptr else { return n }
    let line = String(decoding: UnsafeRawBufferPointer(start: ptr, count: n), as: UTF8.self)
        .trimmingCharacters(in: .whitespacesAndNewlines)
    if line.hasPrefix("HTTP/") {
        // A new status line (after 100 Continue, too): start over.
        let parts = line.split(separator: " ", maxSplits: 2)
        ctx.status = parts.count >= 2 ? Int(parts[1]) ?? 0 : 0
        ctx.headers.removeAll(keepingCapacity: true)
    } else if let colon = line.firstIndex(of: ":") {
        ctx.headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return n
}

/// CURL_READFUNC_ABORT: stops the transfer with CURLE_ABORTED_BY_CALLBACK.
private let readAbort = 0x1000_0000

private let readCallback: cce4_curl_data_cb = { ptr, size, nmemb, userdata in
    let ctx = Unmanaged<TransferContext>.fromOpaque(userdata!).takeUnretainedValue()
    guard let ptr else { return 0 }
    if let stream = ctx.stream {
        do {
            let n = try stream(UnsafeMutableRawBufferPointer(start: ptr, count: size * nmemb))
            ctx.uploaded += n
            return n
        } catch {
            ctx.streamError = error
            return readAbort
        }
    }
    guard let src = ctx.upload else { return 0 }
    let n = min(size * nmemb, src.count - ctx.uploaded)
    if n > 0 { UnsafeMutableRawPointer(ptr).copyMemory(from: src.baseAddress! + ctx.uploaded, byteCount: n) }
    ctx.uploaded += n
    return n
}

/// AWS Signature V4 signing of every request, by libcurl's CURLOPT_AWS_SIGV4.
public struct SigV4: Sendable {
    public var region: String
    public var service: String
    public var accessKey: String
    public var secretKey: String
    public var sessionToken: String?

    public init(region: String, service: String = "s3", accessKey: String, secretKey: String, sessionToken: String? = nil) {
        self.region = region; self.service = service; self.accessKey = accessKey; self.secretKey = secretKey; self.sessionToken = sessionToken
    }
}

/// How a client connects, how long it waits, and how hard it tries.
public struct HTTPClientOptions: Sendable {
    /// Seconds to wait for a TCP/TLS connection.
    public var connectTimeout: Double = 5
    /// A transfer slower than 1 KiB/s for this many seconds is abandoned (and retried).
    public var stallTimeout: Double = 10
    /// A whole attempt may take at most this many seconds (nil: no limit but the stall timeout).
    public var totalTimeout: Double? = nil
    /// Attempts per request (1 = no retries). Streamed bodies are sent once.
    public var maxAttempts: Int = 6
    /// Retries stop once this many seconds have passed since the first attempt.
    public var retryTime: Double = 30
    /// Easy handles (each keeps its own connection alive) kept for reuse.
    public var maxIdleConnections: Int = 32
    /// A PEM bundle of CA certificates (default: the system's). Certificate and host-name
    /// checks are always on.
    public var caFile: String? = nil
    /// A 2xx body longer than this (not going into a caller's buffer) fails the request.
    public var maxResponseBytes: Int = 64 << 20
    /// Sign every request with AWS SigV4 (nil: unsigned).
    public var sigV4: SigV4? = nil
    /// Turns an error body into a short label for messages (S3's XML `<Code>`, say).
    public var errorLabel: (@Sendable ([UInt8]) -> String?)? = nil

    public init() {}
}

/// A pool of easy handles with the signing and timeout settings of one endpoint. Thread-safe:
/// each request takes a handle (or makes one), runs on the calling thread, and gives it back.
/// Lock order: `idle` is the only lock; nothing is done while holding it but list edits.
public final class CurlClient: Sendable {
    public let options: HTTPClientOptions
    private let idle = Mutex<[CurlEasy]>([])
    /// Requests sent, attempts that were retries, and new TCP/TLS connections opened (for tests
    /// and logs).
    public let stats = Mutex<(requests: Int, retries: Int, connections: Int)>((0, 0, 0))

    public init(options: HTTPClientOptions = HTTPClientOptions()) {
        self.options = options
    }

    private final class Unsafe: @unchecked Sendable { let easy: CurlEasy; init(_ e: CurlEasy) { easy = e } }

    private func take() throws(TransportError) -> CurlEasy {
        if let e = idle.withLock({ $0.popLast().map(Unsafe.init) }) { return e.easy }
        guard let e = CurlEasy() else { throw TransportError(code: -1, message: "libcurl could not be initialised") }
        return e
    }

    private func give(_ e: CurlEasy) {
        let box = Unsafe(e)
        idle.withLock { list in if list.count < options.maxIdleConnections { list.append(box.easy) } }
    }

    /// One attempt. `destination` receives a 2xx body (it must be large enough).
    private func attempt(_ req: HTTPRequest, destination: UnsafeMutableRawBufferPointer?) throws(TransportError) -> HTTPResponse {
        let easy = try take()
        var ok = false
        defer { if ok { give(easy) } }  // a handle whose transfer failed is dropped with its connection
        let h = easy.handle
        curl_easy_reset(h)
        let ctx = TransferContext()
        ctx.destination = destination
        ctx.bodyCap = options.maxResponseBytes
        var uploadLength: Int64? = 0
        switch req.body {
        case .none: break
        case .bytes(let b): ctx.upload = b; uploadLength = Int64(b.count)
        case .stream(let length, let read): ctx.stream = read; uploadLength = length
        }
        let userdata = Unmanaged.passUnretained(ctx).toOpaque()
        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        defer { curl_slist_free_all(headerList) }
        var headers = req.headers
        if let sig = options.sigV4 {
            // x-amz-content-sha256 is sent explicitly: libcurl 7.88 signs the payload hash it is
            // given here, and S3-compatible servers (moto, MinIO) refuse a signature without it.
            // UNSIGNED-PAYLOAD: the bytes are AEAD ciphertext, authenticated end to end anyway.
            headers.append(("x-amz-content-sha256", "UNSIGNED-PAYLOAD"))
            if let token = sig.sessionToken { headers.append(("x-amz-security-token", token)) }
        }
        if uploadLength == nil { headers.append(("Transfer-Encoding", "chunked")) }
        for (k, v) in headers { headerList = curl_slist_append(headerList, v.isEmpty ? "\(k):" : "\(k): \(v)") }

        var rc: Int32 = 0
        func set(_ r: Int32) { if rc == 0 { rc = r } }
        set(cce4_curl_setopt_string(h, CURLoption(UInt32(CCE4_CURLOPT_URL)), req.url))
        set(cce4_curl_setopt_string(h, CURLoption(UInt32(CCE4_CURLOPT_PROTOCOLS_STR)), "http,https"))
        set(cce4_curl_setopt_long(h, CURLoption(UInt32(CCE4_CURLOPT_NOSIGNAL)), 1))
        set(cce4_curl_setopt_long(h, CURLoption(UInt32(CCE4_CURLOPT_TCP_KEEPALIVE)), 1))
        set(cce4_curl_setopt_long(h, CURLoption(UInt32(CCE4_CURLOPT_FOLLOWLOCATION)), 0))
        set(cce4_curl_setopt_long(h, CURLoption(UInt32(CCE4_CURLOPT_SSL_VERIFYPEER)), 1))
        set(cce4_curl_setopt_long(h, CURLoption(UInt32(CCE4_CURLOPT_SSL_VERIFYHOST)), 2))
        if let ca = options.caFile { set(cce4_curl_setopt_string(h, CURLoption(UInt32(CCE4_CURLOPT_CAINFO)), ca)) }
        set(cce4_curl_setopt_long(h, CURLoption(UInt32(CCE4_CURLOPT_CONNECTTIMEOUT_MS)), Int(options.connectTimeout * 1000)))
        set(cce4_curl_setopt_long(h, CURLoption(UInt32(CCE4_CURLOPT_LOW_SPEED_LIMIT)), 1024))
        set(cce4_curl_setopt_long(h, CURLoption(UInt32(CCE4_CURLOPT_LOW_SPEED_TIME)), max(1, Int(options.stallTimeout.rounded(.up)))))
        if let total = options.totalTimeout { set(cce4_curl_setopt_long(h, CURLoption(UInt32(CCE4_CURLOPT_TIMEOUT_MS)), max(1, Int(total * 1000)))) }
        if let sig = options.sigV4 {
            set(cce4_curl_setopt_string(h, CURLoption(UInt32(CCE4_CURLOPT_AWS_SIGV4)), "aws:amz:\(sig.region):\(sig.service)"))
            set(cce4_curl_setopt_string(h, CURLoption(UInt32(CCE4_CURLOPT_USERNAME)), sig.accessKey))
            set(cce4_curl_setopt_string(h, CURLoption(UInt32(CCE4_CURLOPT_PASSWORD)), sig.secretKey))
        }
        set(cce4_curl_setopt_pointer(h, CURLoption(UInt32(CCE4_CURLOPT_HTTPHEADER)), UnsafeMutableRawPointer(headerList)))
        set(cce4_curl_setopt_pointer(h, CURLoption(UInt32(CCE4_CURLOPT_ERRORBUFFER)), easy.errorBuffer))
        set(cce4_curl_set_write(h, writeCallback, userdata))
        set(cce4_curl_set_header(h, headerCallback, userdata))
        switch req.method {
        case "GET": set(cce4_curl_setopt_long(h, CURLoption(UInt32(CCE4_CURLOPT_HTTPGET)), 1))
        case "HEAD": set(cce4_curl_setopt_long(h, CURLoption(UInt32(CCE4_CURLOPT_NOBODY)), 1))
        case "PUT":
            set(cce4_curl_setopt_long(h, CURLoption(UInt32(CCE4_CURLOPT_UPLOAD)), 1))
            set(cce4_curl_setopt_offset(h, CURLoption(UInt32(CCE4_CURLOPT_INFILESIZE_LARGE)), curl_off_t(uploadLength ?? -1)))
            set(cce4_curl_set_read(h, readCallback, userdata))
        case "POST":
            set(cce4_curl_setopt_long(h, CURLoption(UInt32(CCE4_CURLOPT_POST)), 1))
            set(cce4_curl_setopt_offset(h, CURLoption(UInt32(CCE4_CURLOPT_POSTFIELDSIZE_LARGE)), curl_off_t(uploadLength ?? -1)))
            set(cce4_curl_set_read(h, readCallback, userdata))
        default:
            set(cce4_curl_setopt_string(h, CURLoption(UInt32(CCE4_CURLOPT_CUSTOMREQUEST)), req.method))
        }
        guard rc == 0 else {
            throw TransportError(code: rc, message: "libcurl refused an option: " + String(cString: curl_easy_strerror(CURLcode(UInt32(rc)))))
        }
        easy.errorBuffer[0] = 0
        let result = Int32(bitPattern: curl_easy_perform(h).rawValue)
        let opened = Int(cce4_curl_num_connects(h))
        if opened > 0 { stats.withLock { $0.connections += opened } }
        // Unset the pointers into this frame before the handle goes back to the pool.
        _ = cce4_curl_setopt_pointer(h, CURLoption(UInt32(CCE4_CURLOPT_HTTPHEADER)), nil)
        if ctx.overflow { throw TransportError(code: 23, message: "the server sent more bytes than were asked for") }
        if ctx.tooLarge { throw TransportError(code: 23, message: "the response is larger than the \(options.maxResponseBytes)-byte limit") }
        if let e = ctx.streamError { throw TransportError(code: 42, message: "the request body could not be read: \(e)") }
        guard result == 0 else {
            let detail = String(cString: easy.errorBuffer)
            throw TransportError(code: result, message: detail.isEmpty ? String(cString: curl_easy_strerror(CURLcode(UInt32(bitPattern: result)))) : detail)
        }
        let status = Int(cce4_curl_response_code(h))
        ok = true
        return HTTPResponse(status: status, headers: ctx.headers, body: ctx.body, received: ctx.received)
    }

    /// Sends a request, retrying transport failures and retryable statuses (429, 5xx) with
    /// backoff; a streamed body is sent once. `validate` may turn a 2xx response into a
    /// retryable failure (a short body).
    public func perform(_ req: HTTPRequest, destination: UnsafeMutableRawBufferPointer? = nil,
                        validate: ((HTTPResponse) -> String?)? = nil) throws(TransportError) -> HTTPResponse {
        var maxAttempts = max(1, options.maxAttempts)
        if case .stream = req.body { maxAttempts = 1 }
        let policy = RetryPolicy(maxAttempts: maxAttempts, totalTime: options.retryTime)
        let start = DispatchTime.now().uptimeNanoseconds
        var attemptNo = 0
        var gen = SystemRandomNumberGenerator()
        while true {
            attemptNo += 1
            stats.withLock { $0.requests += 1; if attemptNo > 1 { $0.retries += 1 } }
            var failure: TransportError
            do throws(TransportError) {
                let r = try attempt(req, destination: destination)
                if RetryPolicy.isRetryable(status: r.status) {
                    let label = options.errorLabel?(r.body) ?? ""
                    failure = TransportError(code: -Int32(r.status), message: "HTTP \(r.status)\(label.isEmpty ? "" : " " + label)")
                    if attemptNo >= policy.maxAttempts { return r }
                } else if (200..<300).contains(r.status), let problem = validate?(r) {
                    failure = TransportError(code: 18, message: problem)
                } else {
                    return r
                }
            } catch {
                failure = error
                guard error.isRetryable else { throw error }
            }
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            guard let pause = policy.delay(after: attemptNo, elapsed: elapsed, random: Double.random(in: 0..<1, using: &gen)) else {
                throw TransportError(code: failure.code, message: "\(failure.message) (gave up after \(attemptNo) attempts in \(String(format: "%.1f", elapsed)) s)")
            }
            usleep(UInt32(pause * 1e6))
        }
    }
}
