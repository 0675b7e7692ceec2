// s3://BUCKET/PREFIX: any S3-compatible service (AWS S3, MinIO, Ceph RGW, moto) over libcurl.
import Dispatch
import Foundation
import Synchronization
import CurlHTTP

/// Objects are S3 objects named PREFIX/KEY. Requests are signed with SigV4 (libcurl's
/// CURLOPT_AWS_SIGV4), sent over a pool of kept-alive connections, and retried with backoff
/// on 5xx, 429/SlowDown, timeouts and resets. Reads are ranged GETs pinned to the ETag first
/// seen (If-Match): an object replaced mid-read fails with `.preconditionFailed`, never a mix.
public final class S3ObjectStore: ObjectStore {
    public let config: S3Config
    public var url: String { config.url }
    let client: CurlClient
    /// Ciphertext blocks of open readers (nil when blockSize is 0).
    let cache: BlockCache?
    /// Objects `warm` has opened ahead: the ETag and size of its GET (whose first block went
    /// into the cache) and when. `openReader` takes an entry once, within `warmLifetime`,
    /// instead of sending a GET of its own.
    /// `bytes` sums their sizes: at most half the block cache's budget is held by objects
    /// opened ahead and not yet opened, whatever the number of concurrent `warm` calls.
    private let warmed = Mutex<(entries: [ObjectKey: (etag: String, size: Int64, at: UInt64)], bytes: Int64)>(([:], 0))
    /// How long an object opened ahead stays usable (nanoseconds), and how many are kept.
    static let warmLifetime: UInt64 = 60_000_000_000
    static let warmedLimit = 16_384
    /// GETs `warm` keeps in flight.
    static let warmConcurrency = 8

    public init(config: S3Config) throws(ObjectStoreError) {
        self.config = config
        var http = HTTPClientOptions()
        http.connectTimeout = config.options.connectTimeout
        http.stallTimeout = config.options.stallTimeout
        http.maxAttempts = config.options.maxAttempts
        http.retryTime = config.options.retryTime
        http.maxIdleConnections = config.options.maxIdleConnections
        http.caFile = config.options.caFile
        http.sigV4 = SigV4(region: config.region, accessKey: config.credentials.accessKey,
                           secretKey: config.credentials.secretKey, sessionToken: config.credentials.sessionToken)
        http.errorLabel = { S3XML.error($0)?.code }
        client = CurlClient(options: http)
        let o = config.options
        if o.blockSize > 0 {
            let disk = try o.diskCacheDirectory.map { d throws(ObjectStoreError) in try DiskBlockCache(directory: d, limit: o.diskCacheLimit) }
            cache = BlockCache(blockSize: o.blockSize, budget: o.cacheMemory, disk: disk)
        } else {
            cache = nil
        }
    }

    /// Block cache hits, misses, prefetches started, and bytes held (tests, logs).
    public var cacheStatistics: (hits: Int, misses: Int, prefetches: Int, cachedBytes: Int, pendingBytes: Int)? { cache?.statistics }

    /// Requests sent, retried, and new connections opened so far (tests, logs).
    public var requestCounts: (requests: Int, retries: Int, connections: Int) { client.stats.withLock { $0 } }

    // MARK: URLs

    /// SigV4 URI encoding: unreserved characters stay, everything else is %XX (so is "/"
    /// unless `keepSlash`).
    static let unreservedBytes: Set<UInt8> = Set(Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8))

    static func uriEncode(_ s: String, keepSlash: Bool) -> String {
        var out = ""
        for b in s.utf8 {
            if unreservedBytes.contains(b) || (keepSlash && b == 0x2f) { out.unicodeScalars.append(Unicode.Scalar(b)) } else { out += String(format: "%%%02X", b) }
        }
        return out
    }

    /// The canonical query: parameters sorted by name, names and values URI-encoded, "=" always
    /// present. libcurl 7.88 signs the query as given, so it must already be canonical.
    static func canonicalQuery(_ params: [(String, String)]) -> String {
        // Encoded names and values are ASCII: sorting "name=value" bytewise sorts by name,
        // then value ("=" sorts below every unreserved character).
        let pairs: [String] = params.map { p in uriEncode(p.0, keepSlash: false) + "=" + uriEncode(p.1, keepSlash: false) }
        let sorted = pairs.sorted { (a: String, b: String) -> Bool in Array(a.utf8).lexicographicallyPrecedes(Array(b.utf8)) }
        return sorted.joined(separator: "&")
    }

    func fullKey(_ key: ObjectKey) -> String { config.prefix.isEmpty ? key.rawValue : config.prefix + "/" + key.rawValue }

    /// The request URL of an object (`key` nil: the bucket) with an optional query.
    func requestURL(_ key: String?, query: [(String, String)] = []) -> String {
        let path = key.map { "/" + Self.uriEncode($0, keepSlash: true) } ?? "/"
        var base: String
        switch config.addressing {
        case .path:
            base = config.endpoint + "/" + config.bucket + (key == nil ? "" : path)
        case .virtual:
            let schemeEnd = config.endpoint.range(of: "://")!.upperBound
            base = String(config.endpoint[..<schemeEnd]) + config.bucket + "." + String(config.endpoint[schemeEnd...]) + path
        }
        if !query.isEmpty { base += "?" + Self.canonicalQuery(query) }
        return base
    }

    // MARK: errors

    /// Maps a non-2xx response to the store's error codes, with S3's error code and message.
    func error(_ r: HTTPResponse, key: String?, _ what: String) -> ObjectStoreError {
        let parsed = S3XML.error(r.body)
        let s3 = parsed.map { " (\($0.code)\($0.message.isEmpty ? "" : ": " + $0.message))" } ?? ""
        switch (r.status, parsed?.code ?? "") {
        case (403, "SignatureDoesNotMatch"), (403, "InvalidAccessKeyId"), (403, "ExpiredToken"), (403, "InvalidToken"),
             (400, "ExpiredToken"), (400, "InvalidToken"), (400, "AuthorizationHeaderMalformed"), (401, _):
            return ObjectStoreError(.authentication, key: key, "\(what): the S3 service refused the credentials\(s3); check the access key and secret (\(config.credentials.source)) and the region \(config.region)")
        case (403, _):
            return ObjectStoreError(.permissionDenied, key: key, "\(what): access denied by the S3 service\(s3)")
        case (404, "NoSuchBucket"):
            return ObjectStoreError(.notFound, key: key, "\(what): bucket \(config.bucket) does not exist at \(config.endpoint)")
        case (404, _):
            return ObjectStoreError(.notFound, key: key, "\(what): no such object\(s3)")
        case (412, _):
            return ObjectStoreError(.preconditionFailed, key: key, "\(what): the object changed since it was opened\(s3)")
        default:
            return ObjectStoreError(.io, key: key, "\(what): HTTP \(r.status)\(s3)")
        }
    }

    func transport(_ e: TransportError, key: String?, _ what: String) -> ObjectStoreError {
        ObjectStoreError(.io, key: key, "\(what): \(config.endpoint) unreachable or failing: \(e.message)")
    }

    func send(_ req: HTTPRequest, key: String?, _ what: String, destination: UnsafeMutableRawBufferPointer? = nil,
              validate: ((HTTPResponse) -> String?)? = nil) throws(ObjectStoreError) -> HTTPResponse {
        do throws(TransportError) {
            return try client.perform(req, destination: destination, validate: validate)
        } catch {
            throw transport(error, key: key, what)
        }
    }

    /// `send` with a body borrowed from `bytes`.
    func send(_ req: HTTPRequest, body bytes: [UInt8], key: String?, _ what: String) throws(ObjectStoreError) -> HTTPResponse {
        var result: Result<HTTPResponse, ObjectStoreError> = .failure(ObjectStoreError(.io, key: key, "\(what): not sent"))
        bytes.withUnsafeBytes { b in
            var r = req
            r.body = .bytes(b)
            do throws(ObjectStoreError) { result = .success(try send(r, key: key, what)) } catch { result = .failure(error) }
        }
        return try result.get()
    }

    // MARK: ObjectStore

    static func contentRangeTotal(_ value: String?) -> Int64? {
        guard let v = value, let slash = v.lastIndex(of: "/") else { return nil }
        return Int64(v[v.index(after: slash)...])
    }

    public func read(_ key: ObjectKey, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer, ifMatch: String?) throws(ObjectStoreError) -> ReadResult {
        guard offset >= 0 else { throw ObjectStoreError(.io, key: key.rawValue, "negative offset") }
        if buffer.count == 0 {
            let info = try head(key)
            if let ifMatch, ifMatch != info.etag { throw ObjectStoreError(.preconditionFailed, key: key.rawValue, "the object changed since it was opened") }
            return ReadResult(count: 0, objectSize: info.size, etag: info.etag)
        }
        let full = fullKey(key)
        var headers = [("Range", "bytes=\(offset)-\(offset + Int64(buffer.count) - 1)")]
        if let ifMatch { headers.append(("If-Match", ifMatch)) }
        let req = HTTPRequest(method: "GET", url: requestURL(full), headers: headers)
        let r = try send(req, key: key.rawValue, "read", destination: buffer, validate: Self.validateRange(offset: offset, count: buffer.count))
        switch r.status {
        case 206, 200:
            guard let etag = r.headers["etag"] else { throw ObjectStoreError(.io, key: key.rawValue, "read: the response has no ETag") }
            if let ifMatch, etag != ifMatch { throw ObjectStoreError(.preconditionFailed, key: key.rawValue, "read: the object changed since it was opened") }
            let total = r.status == 206 ? Self.contentRangeTotal(r.headers["content-range"]) : Int64(r.received)
            guard let total, r.status == 206 || offset == 0 else { throw ObjectStoreError(.io, key: key.rawValue, "read: the server ignored the Range header") }
            return ReadResult(count: r.received, objectSize: total, etag: etag)
        case 416:
            // At or past the end: no bytes. S3 sends the size as "bytes */SIZE".
            let info = try head(key)
            if let ifMatch, ifMatch != info.etag { throw ObjectStoreError(.preconditionFailed, key: key.rawValue, "the object changed since it was opened") }
            return ReadResult(count: 0, objectSize: info.size, etag: info.etag)
        default:
            throw error(r, key: key.rawValue, "read")
        }
    }

    /// A ranged GET's body must be as long as the range the server says it sent (a body cut
    /// short by a reset proxy is retried, never returned).
    static func validateRange(offset: Int64, count: Int) -> (HTTPResponse) -> String? {
        { r in
            guard r.status == 206 else { return nil }
            guard let cr = r.headers["content-range"], cr.hasPrefix("bytes "), let dash = cr.firstIndex(of: "-"), let slash = cr.firstIndex(of: "/"),
                  let first = Int64(cr[cr.index(cr.startIndex, offsetBy: 6)..<dash]), let last = Int64(cr[cr.index(after: dash)..<slash]),
                  first == offset, last >= first else { return "malformed Content-Range" }
            let expected = Int(last - first + 1)
            guard expected <= count else { return "the server sent more than the range" }
            return r.received == expected ? nil : "body cut short: \(r.received) of \(expected) bytes"
        }
    }

    public func head(_ key: ObjectKey) throws(ObjectStoreError) -> ObjectInfo {
        let full = fullKey(key)
        let r = try send(HTTPRequest(method: "HEAD", url: requestURL(full)), key: key.rawValue, "head")
        guard r.status == 200 else {
            // HEAD responses carry no body: ask again with a GET of one byte for S3's reason
            // (a wrong signature, a missing bucket rather than a missing object).
            if r.status == 403 || r.status == 400 || r.status == 404 {
                let probe = try send(HTTPRequest(method: "GET", url: requestURL(full), headers: [("Range", "bytes=0-0")]), key: key.rawValue, "head")
                if !(200..<300).contains(probe.status) { throw error(probe, key: key.rawValue, "head") }
            }
            throw error(r, key: key.rawValue, "head")
        }
        guard let len = r.headers["content-length"].flatMap({ Int64($0) }), len >= 0, let etag = r.headers["etag"] else {
            throw ObjectStoreError(.io, key: key.rawValue, "head: the response lacks Content-Length or ETag")
        }
        let modified = r.headers["last-modified"].flatMap(Self.parseHTTPDate) ?? 0
        return ObjectInfo(key: key, size: len, etag: etag, modified: Date(timeIntervalSince1970: modified))
    }

    /// With the block cache, an open is one GET of the first block (no HEAD): its ETag pins
    /// the reader, its Content-Range gives the size, and its bytes are the first block, which
    /// every file open reads anyway (the stream header). Without it, or for an empty object
    /// (416), a HEAD.
    public func openReader(_ key: ObjectKey) throws(ObjectStoreError) -> any ObjectReader {
        let w: (etag: String, size: Int64, at: UInt64)? = warmed.withLock { s in
            guard let e = s.entries.removeValue(forKey: key) else { return nil }
            s.bytes -= e.size
            return e
        }
        if let w, DispatchTime.now().uptimeNanoseconds - w.at < Self.warmLifetime {
            return S3ObjectReader(store: self, key: key, size: w.size, etag: w.etag)
        }
        return try openFetching(key)
    }

    /// An open that sends the GET of the first block (or a HEAD, without the cache).
    func openFetching(_ key: ObjectKey) throws(ObjectStoreError) -> S3ObjectReader {
        if let cache {
            let bs = cache.blockSize
            var buf = [UInt8](repeating: 0, count: bs)
            var result: Result<HTTPResponse, ObjectStoreError> = .failure(ObjectStoreError(.io, key: key.rawValue, "open: not sent"))
            let req = HTTPRequest(method: "GET", url: requestURL(fullKey(key)), headers: [("Range", "bytes=0-\(bs - 1)")])
            buf.withUnsafeMutableBytes { b in
                do throws(ObjectStoreError) { result = .success(try send(req, key: key.rawValue, "open", destination: b, validate: Self.validateRange(offset: 0, count: bs))) }
                catch { result = .failure(error) }
            }
            let r = try result.get()
            switch r.status {
            case 206, 200:
                guard let etag = r.headers["etag"] else { throw ObjectStoreError(.io, key: key.rawValue, "open: the response has no ETag") }
                let total = r.status == 206 ? Self.contentRangeTotal(r.headers["content-range"]) : Int64(r.received)
                guard let total, total >= 0 else { throw ObjectStoreError(.io, key: key.rawValue, "open: no object size in the response") }
                let reader = S3ObjectReader(store: self, key: key, size: total, etag: etag)
                if r.received == reader.blockLength(0, Int64(bs)) {
                    buf.removeSubrange(r.received...)
                    cache.insert(reader.blockID(0), buf)
                }
                return reader
            case 416:
                break  // an empty object: no first block
            default:
                throw error(r, key: key.rawValue, "open")
            }
        }
        let info = try head(key)
        return S3ObjectReader(store: self, key: key, size: info.size, etag: info.etag)
    }

    /// Opens objects of at most one block ahead, `warmConcurrency` GETs at a time: each GET's
    /// bytes go into the block cache and its ETag and size are kept for the `openReader` that
    /// follows, which then sends nothing. Objects larger than a block or of another size than
    /// expected are skipped, and so is everything once the objects opened ahead and not yet
    /// opened hold half the cache's budget (entries past their lifetime are dropped first);
    /// without the block cache nothing is fetched. Returns when the GETs have finished.
    @discardableResult
    public func warm(_ objects: [(key: ObjectKey, size: Int64)]) -> Int {
        guard let cache else { return 0 }
        let bs = Int64(cache.blockSize)
        let todo = objects.filter { $0.size > 0 && $0.size <= bs }
        guard !todo.isEmpty else { return 0 }
        let started = Atomic<Int>(0)
        runOnLanes(todo.count, lanes: Self.warmConcurrency) { [self] i in
            let o = todo[i]
            guard reserveWarm(o.size, budget: Int64(cache.budget / 2)) else { return false }
            let r = try? openFetching(o.key)
            let kept = warmed.withLock { s -> Bool in
                guard let r, r.size == o.size, s.entries[o.key] == nil else { s.bytes -= o.size; return false }
                s.entries[o.key] = (r.etag, r.size, DispatchTime.now().uptimeNanoseconds)
                return true
            }
            if kept { started.add(1, ordering: .relaxed) }
            return true
        }
        return started.load(ordering: .relaxed)
    }

    /// Reserves `size` bytes of the objects opened ahead within `budget` (dropping entries past
    /// their lifetime if it is full); false when they do not fit.
    private func reserveWarm(_ size: Int64, budget: Int64) -> Bool {
        warmed.withLock { s in
            if s.bytes + size > budget || s.entries.count >= Self.warmedLimit {
                let now = DispatchTime.now().uptimeNanoseconds
                for (k, e) in s.entries where now - e.at >= Self.warmLifetime {
                    s.entries[k] = nil
                    s.bytes -= e.size
                }
                guard s.bytes + size <= budget, s.entries.count < Self.warmedLimit else { return false }
            }
            s.bytes += size
            return true
        }
    }

    public func makeWriter(_ key: ObjectKey, ifAbsent: Bool) throws(ObjectStoreError) -> ObjectWriter {
        S3ObjectWriter(store: self, key: key, ifAbsent: ifAbsent)
    }

    public func delete(_ key: ObjectKey) throws(ObjectStoreError) {
        let r = try send(HTTPRequest(method: "DELETE", url: requestURL(fullKey(key))), key: key.rawValue, "delete")
        guard (200..<300).contains(r.status) || r.status == 404 else { throw error(r, key: key.rawValue, "delete") }
    }

    public func list(prefix: String, startAfter: ObjectKey?, maxKeys: Int) throws(ObjectStoreError) -> ObjectListPage {
        let base = config.prefix.isEmpty ? "" : config.prefix + "/"
        var query = [("list-type", "2"), ("max-keys", String(max(1, min(1000, maxKeys)))), ("prefix", base + prefix)]
        if let startAfter { query.append(("start-after", base + startAfter.rawValue)) }
        let r = try send(HTTPRequest(method: "GET", url: requestURL(nil, query: query)), key: nil, "list")
        guard r.status == 200 else { throw error(r, key: nil, "list") }
        guard let page = S3XML.listPage(r.body) else { throw ObjectStoreError(.io, key: nil, "list: the server's answer is not a ListObjectsV2 result") }
        var objects = [ObjectInfo]()
        var last: ObjectKey?
        for e in page.entries {
            guard e.key.hasPrefix(base), let k = try? ObjectKey(String(e.key.dropFirst(base.count))) else { continue }
            last = k
            objects.append(ObjectInfo(key: k, size: e.size, etag: e.etag, modified: Date(timeIntervalSince1970: S3XML.parseISO8601(e.lastModified) ?? 0)))
        }
        let next: ObjectKey?
        if page.isTruncated {
            // A page of only foreign keys still advances: continue after its last raw key.
            if let last { next = last } else if let raw = page.entries.last, let k = try? ObjectKey(String(raw.key.dropFirst(base.count))) { next = k } else { next = nil }
        } else {
            next = nil
        }
        return ObjectListPage(objects: objects, nextStartAfter: next)
    }

    /// "Thu, 26 Nov 2026 11:48:15 GMT" (RFC 7231 IMF-fixdate) → seconds since 1970.
    static func parseHTTPDate(_ s: String) -> Double? {
        let parts = s.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard parts.count == 6, let d = Int(parts[1]), let mo = months.firstIndex(of: String(parts[2])), let y = Int(parts[3]) else { return nil }
        let iso = String(format: "%04d-%02d-%02dT%@Z", y, mo + 1, d, String(parts[4]))
        return S3XML.parseISO8601(iso)
    }

    // MARK: uploads

    func putObject(_ full: String, key: ObjectKey, body: [UInt8], ifAbsent: Bool) throws(ObjectStoreError) -> String {
        var headers = [("Content-Type", "application/octet-stream")]
        if ifAbsent { headers.append(("If-None-Match", "*")) }
        let r = try send(HTTPRequest(method: "PUT", url: requestURL(full), headers: headers), body: body, key: key.rawValue, "write")
        if r.status == 412 && ifAbsent { throw ObjectStoreError(.alreadyExists, key: key.rawValue, "write: an object is already there") }
        guard (200..<300).contains(r.status), let etag = r.headers["etag"] else { throw error(r, key: key.rawValue, "write") }
        return etag
    }
}

/// One version of one S3 object: ranged GETs with If-Match on the ETag seen at open, through
/// the store's block cache with a readahead window that grows on sequential reads.
final class S3ObjectReader: ObjectReader {
    let store: S3ObjectStore
    let key: ObjectKey
    let size: Int64
    let etag: String
    let readahead: Mutex<Readahead>

    init(store: S3ObjectStore, key: ObjectKey, size: Int64, etag: String) {
        self.store = store; self.key = key; self.size = size; self.etag = etag
        let bs = Int64(max(1, store.config.options.blockSize))
        readahead = Mutex(Readahead(initial: bs, maximum: Int64(store.config.options.readaheadMax)))
    }

    /// One ranged GET of exactly `buffer.count` bytes at `offset`, pinned to the ETag.
    func fetch(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(ObjectStoreError) {
        let r = try store.read(key, at: offset, into: buffer, ifMatch: etag)
        guard r.objectSize == size else { throw ObjectStoreError(.preconditionFailed, key: key.rawValue, "the object changed size since it was opened") }
        guard r.count == buffer.count else { throw ObjectStoreError(.io, key: key.rawValue, "short read: \(r.count) of \(buffer.count) bytes") }
    }

    func blockID(_ i: Int64) -> BlockID { BlockID(key: store.fullKey(key), etag: etag, index: i) }

    func blockLength(_ i: Int64, _ bs: Int64) -> Int { Int(min(bs, size - i * bs)) }

    @Sendable func fetchBlock(_ i: Int64, _ bs: Int64) throws(ObjectStoreError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: blockLength(i, bs))
        var failure: ObjectStoreError?
        out.withUnsafeMutableBytes { b in
            do throws(ObjectStoreError) { try fetch(at: i * bs, into: b) } catch { failure = error }
        }
        if let failure { throw failure }
        return out
    }

    /// `count` consecutive blocks from block `first`, in one GET.
    @Sendable func fetchBlocks(_ first: Int64, count: Int, _ bs: Int64) throws(ObjectStoreError) -> [UInt8] {
        let start = first * bs, end = min(size, (first + Int64(count)) * bs)
        var out = [UInt8](repeating: 0, count: Int(end - start))
        var failure: ObjectStoreError?
        out.withUnsafeMutableBytes { b in
            do throws(ObjectStoreError) { try fetch(at: start, into: b) } catch { failure = error }
        }
        if let failure { throw failure }
        return out
    }

    func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(ObjectStoreError) -> Int {
        guard offset >= 0 else { throw ObjectStoreError(.io, key: key.rawValue, "negative offset") }
        let n = Int(min(Int64(buffer.count), max(0, size - offset)))
        if n == 0 { return 0 }
        guard let cache = store.cache else {
            try fetch(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]))
            return n
        }
        let bs = Int64(cache.blockSize)
        let first = offset / bs, last = (offset + Int64(n) - 1) / bs
        // The blocks after the first are fetched in the background meanwhile (in parallel).
        if last > first {
            for i in (first + 1)...last { cache.prefetch(blockID(i), size: blockLength(i, bs)) { [self] () throws(ObjectStoreError) in try fetchBlock(i, bs) } }
        }
        var done = 0
        for i in first...last {
            let block = try cache.block(blockID(i), size: blockLength(i, bs)) { () throws(ObjectStoreError) in try fetchBlock(i, bs) }
            let from = Int(offset + Int64(done) - i * bs)
            let count = min(block.count - from, n - done)
            guard from >= 0, count > 0 else { throw ObjectStoreError(.io, key: key.rawValue, "block \(i) is shorter than expected") }
            block.withUnsafeBytes { b in (buffer.baseAddress! + done).copyMemory(from: b.baseAddress! + from, byteCount: count) }
            done += count
        }
        // Readahead: the blocks of the window after this read, in the background.
        let ahead = readahead.withLock { $0.read(at: offset, count: n) }
        prefetch(ahead, after: last, cache: cache)
        return n
    }

    /// Starts fetching the blocks of `ahead` (after block `after`) in the background, in runs
    /// of up to 8 blocks per GET (fewer requests; runs in parallel for large windows).
    private func prefetch(_ ahead: Range<Int64>, after: Int64, cache: BlockCache) {
        let ahead = ahead.clamped(to: 0..<size)
        guard !ahead.isEmpty else { return }
        let bs = Int64(cache.blockSize)
        let from = max(after + 1, ahead.lowerBound / bs), to = (ahead.upperBound - 1) / bs
        var i = from
        while i <= to {
            let end = min(to, i + 7)
            let run = (i...end).map { (id: blockID($0), size: blockLength($0, bs)) }
            let base = i
            cache.prefetchRun(run) { [self] (first: Int, count: Int) throws(ObjectStoreError) -> [UInt8] in
                try fetchBlocks(base + Int64(first), count: count, bs)
            }
            i = end + 1
        }
    }

    /// The next part of a streamed file: fetch its first window now, so the stream does not
    /// wait for this part's window to grow again from one block.
    func willReadSequentially(from offset: Int64) {
        guard let cache = store.cache, offset >= 0, offset < size else { return }
        let ahead = readahead.withLock { $0.continueSequential(at: offset) }
        prefetch(ahead, after: offset / Int64(cache.blockSize) - 1, cache: cache)
    }
}

/// Buffers an object in memory; objects up to `uploadPartSize` go up in one PUT at commit,
/// larger ones as a multipart upload whose parts are sent in parallel (at most 4 at a time)
/// as they fill.
final class S3ObjectWriter: ObjectWriter {
    let store: S3ObjectStore
    let key: ObjectKey
    let ifAbsent: Bool
    let partSize: Int
    var buffer = [UInt8]()
    var total = 0
    var uploadID: String?
    var nextPart = 1
    var finished = false
    let queue = DispatchQueue(label: "cce4.s3.upload", attributes: .concurrent)
    let group = DispatchGroup()
    let slots = DispatchSemaphore(value: 4)
    /// Part number → ETag, and the first failure. Only list edits under the lock.
    let results = UploadResults()

    final class UploadResults: Sendable {
        let state = Mutex<(etags: [Int: String], failure: ObjectStoreError?)>(([:], nil))
        func withLock<R>(_ body: (inout (etags: [Int: String], failure: ObjectStoreError?)) -> R) -> R { state.withLock { body(&$0) } }
    }

    init(store: S3ObjectStore, key: ObjectKey, ifAbsent: Bool) {
        self.store = store; self.key = key; self.ifAbsent = ifAbsent
        partSize = max(5 << 20, store.config.options.uploadPartSize)
    }

    deinit { if !finished { abort() } }

    var full: String { store.fullKey(key) }

    func write(_ bytes: UnsafeRawBufferPointer) throws(ObjectStoreError) {
        precondition(!finished, "write after commit or abort")
        var pos = 0
        while pos < bytes.count {
            let n = min(partSize - buffer.count, bytes.count - pos)
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[pos..<pos + n]))
            pos += n; total += n
            if buffer.count == partSize { try flushPart() }
        }
    }

    /// Starts the multipart upload if needed and sends the buffered part in the background.
    func flushPart() throws(ObjectStoreError) {
        if let failure = results.withLock({ $0.failure }) { abort(); throw failure }
        if uploadID == nil {
            let r = try store.send(HTTPRequest(method: "POST", url: store.requestURL(full, query: [("uploads", "")])), key: key.rawValue, "start upload")
            guard r.status == 200, let id = S3XML.uploadID(r.body) else { throw store.error(r, key: key.rawValue, "start upload") }
            uploadID = id
        }
        let part = buffer, number = nextPart, id = uploadID!
        buffer = []
        buffer.reserveCapacity(partSize)
        nextPart += 1
        slots.wait()
        group.enter()
        let store = self.store, key = self.key, full = self.full, results = self.results, slots = self.slots, group = self.group
        let job = UploadJob { [part] in
            defer { slots.signal(); group.leave() }
            do throws(ObjectStoreError) {
                let r = try store.send(HTTPRequest(method: "PUT", url: store.requestURL(full, query: [("partNumber", String(number)), ("uploadId", id)])),
                                       body: part, key: key.rawValue, "upload part \(number)")
                guard r.status == 200, let etag = r.headers["etag"] else { throw store.error(r, key: key.rawValue, "upload part \(number)") }
                results.withLock { $0.etags[number] = etag }
            } catch {
                results.withLock { if $0.failure == nil { $0.failure = error } }
            }
        }
        queue.async(execute: job.run)
    }

    struct UploadJob: @unchecked Sendable { let run: @Sendable () -> Void }

    func commit() throws(ObjectStoreError) -> ObjectInfo {
        precondition(!finished, "commit after commit or abort")
        if uploadID == nil {
            let body = buffer
            let etag: String
            do throws(ObjectStoreError) { etag = try store.putObject(full, key: key, body: body, ifAbsent: ifAbsent) }
            catch { abort(); throw error }
            finished = true
            buffer = []
            return ObjectInfo(key: key, size: Int64(total), etag: etag, modified: Date())
        }
        if !buffer.isEmpty { try flushPart() }
        group.wait()
        let (etags, failure) = results.withLock { ($0.etags, $0.failure) }
        if let failure { abort(); throw failure }
        var xml = "<CompleteMultipartUpload>"
        for n in 1..<nextPart {
            guard let e = etags[n] else { abort(); throw ObjectStoreError(.io, key: key.rawValue, "upload: part \(n) has no ETag") }
            xml += "<Part><PartNumber>\(n)</PartNumber><ETag>\(S3XML.escape(e))</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let body = Array(xml.utf8)
        var headers = [("Content-Type", "application/xml")]
        if ifAbsent { headers.append(("If-None-Match", "*")) }
        let id = uploadID!
        let r: HTTPResponse
        do throws(ObjectStoreError) {
            r = try store.send(HTTPRequest(method: "POST", url: store.requestURL(full, query: [("uploadId", id)]), headers: headers),
                               body: body, key: key.rawValue, "complete upload")
        } catch { abort(); throw error }
        if r.status == 412 && ifAbsent { abort(); throw ObjectStoreError(.alreadyExists, key: key.rawValue, "write: an object is already there") }
        // CompleteMultipartUpload can fail with 200 and an <Error> body.
        guard r.status == 200, S3XML.error(r.body) == nil else { let e = store.error(r, key: key.rawValue, "complete upload"); abort(); throw e }
        finished = true
        buffer = []
        return try store.head(key)
    }

    func abort() {
        if finished { return }
        finished = true
        buffer = []
        group.wait()
        if let id = uploadID {
            _ = try? store.send(HTTPRequest(method: "DELETE", url: store.requestURL(full, query: [("uploadId", id)])), key: key.rawValue, "abort upload")
        }
    }
}
