// The s3:// backend against a real S3-compatible server (moto on 127.0.0.1, signatures on),
// and its pure parts (URL and credentials resolution, query canonicalisation, XML parsing,
// the retry schedule) without I/O.
import Foundation
@testable import ObjectStore
import CurlHTTP
import TestSupport
import Testing

@Suite("s3:// object store (moto, signatures enforced)")
struct S3ObjectStoreTests {
    func k(_ s: String) throws(ObjectStoreError) -> ObjectKey { try ObjectKey(s) }

    func open(_ name: String, options: S3Options = S3Options(), secret: String? = nil) throws -> any ObjectStore {
        let server = S3TestServer.shared
        return try ObjectStores.open(url: server.freshURL(name), s3: options, environment: server.environment(secret: secret))
    }

    @Test("put, ranged get, head, overwrite, delete")
    func basics() throws {
        try StoreContract.basics(try open("basics"))
    }

    @Test("a large object goes up as a multipart upload and reads back exactly")
    func multipart() throws {
        var o = S3Options()
        o.uploadPartSize = 5 << 20
        let store = try open("multipart", options: o)
        var rng = SeededGenerator(seed: 5)
        let data = rng.bytes(17 << 20 + 12345)
        let w = try store.makeWriter(k("big"), ifAbsent: true)
        var pos = 0
        while pos < data.count {  // odd-sized writes, as the packer makes
            let n = min(777_777, data.count - pos)
            try data.withUnsafeBytes { try w.write(UnsafeRawBufferPointer(rebasing: $0[pos..<pos + n])) }
            pos += n
        }
        let info = try w.commit()
        #expect(info.size == Int64(data.count))
        #expect(info.etag.contains("-4"), "a 4-part multipart ETag: \(info.etag)")
        #expect(bytesEqual(try store.get(k("big")).bytes, data))
        #expect(try store.get(k("big"), range: 5_242_000..<5_243_000).bytes == Array(data[5_242_000..<5_243_000]))
        // create-if-absent holds for multipart uploads too.
        let w2 = try store.makeWriter(k("big"), ifAbsent: true)
        try data.withUnsafeBytes { try w2.write($0) }
        do throws(ObjectStoreError) { _ = try w2.commit(); Issue.record("replaced an existing object") } catch { #expect(error.code == .alreadyExists) }
        #expect(try store.head(k("big")).etag == info.etag)
    }

    @Test("create-if-absent refuses to replace, and changes nothing")
    func ifAbsent() throws {
        try StoreContract.createIfAbsent(try open("ifabsent"))
    }

    @Test("If-Match: an object replaced since it was opened gives preconditionFailed, never new bytes")
    func ifMatch() throws {
        // Without the block cache: every read is a GET with If-Match (BlockCacheTests covers
        // the cached path, where blocks already read stay those of the version opened).
        var o = S3Options()
        o.blockSize = 0
        let store = try open("ifmatch", options: o)
        try store.put(k("o"), [1, 2, 3])
        let reader = try store.openReader(k("o"))
        var buf = [UInt8](repeating: 0, count: 3)
        #expect(try buf.withUnsafeMutableBytes { try reader.read(at: 0, into: $0) } == 3)
        try store.put(k("o"), [4, 5, 6])
        do {
            _ = try buf.withUnsafeMutableBytes { try reader.read(at: 0, into: $0) }
            Issue.record("read a replaced object")
        } catch {
            #expect((error as? ObjectStoreError)?.code == .preconditionFailed)
        }
        #expect(buf == [1, 2, 3])
    }

    @Test("ListObjectsV2 pages through 2,500 keys in order, only under the prefix")
    func listing() throws {
        let store = try open("list")
        let keys = (0..<2500).map { String(format: "v/%05d", $0) }
        DispatchQueue.concurrentPerform(iterations: 10) { t in
            for i in stride(from: t, to: keys.count, by: 10) { _ = try? store.put(try! ObjectKey(keys[i]), [UInt8(i & 0xff)]) }
        }
        try store.put(k("w/other"), [9])
        let all = try store.listAll(prefix: "v/")
        #expect(all.map(\.key.rawValue) == keys)
        #expect(all.allSatisfy { $0.size == 1 })
        let page = try store.list(prefix: "v/", startAfter: k("v/01000"), maxKeys: 7)
        #expect(page.objects.map(\.key.rawValue) == (1001...1007).map { String(format: "v/%05d", $0) })
        #expect(page.nextStartAfter?.rawValue == "v/01007")
        #expect(try store.listAll(prefix: "w/").map(\.key.rawValue) == ["w/other"])
        #expect(try store.listAll(prefix: "x/").isEmpty)
    }

    @Test("wrong credentials are refused by the server, with a message that says so and no secret")
    func wrongCredentials() throws {
        let store = try open("wrongcreds", secret: "not-the-secret-key-0123456789")
        for op in ["head", "put", "list"] {
            do throws(ObjectStoreError) {
                switch op {
                case "head": _ = try store.head(k("x"))
                case "put": try store.put(k("x"), [1])
                default: _ = try store.list(prefix: "", startAfter: nil, maxKeys: 10)
                }
                Issue.record("\(op) with a wrong secret succeeded")
            } catch {
                #expect(error.code == .authentication, "\(op): \(error)")
                #expect(error.description.contains("SignatureDoesNotMatch"), "\(error)")
                #expect(!error.description.contains("not-the-secret"))
            }
        }
    }

    @Test("a missing bucket and an unreachable endpoint are clear errors")
    func missingBucketAndEndpoint() throws {
        let server = S3TestServer.shared
        let nobucket = try ObjectStores.open(url: "s3://no-such-bucket-cce4/x", environment: server.environment())
        do throws(ObjectStoreError) { _ = try nobucket.list(prefix: "", startAfter: nil, maxKeys: 1); Issue.record("listed a missing bucket") }
        catch { #expect(error.code == .notFound && error.description.contains("no-such-bucket-cce4 does not exist"), "\(error)") }
        var env = server.environment()
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  // discard port: nothing listens
        var o = S3Options()
        o.maxAttempts = 3; o.retryTime = 2
        let gone = try ObjectStores.open(url: "s3://cce4-test/x", s3: o, environment: env)
        let start = Date()
        do throws(ObjectStoreError) { _ = try gone.head(k("a")); Issue.record("reached a closed port") }
        catch { #expect(error.code == .io && error.description.contains("gave up after"), "\(error)") }
        #expect(Date().timeIntervalSince(start) < 5)
    }

    @Test("warm: objects of one block are opened ahead with one GET each, 8 at a time; their opens and reads then send nothing; larger, wrong-size and missing objects are skipped")
    func warm() throws {
        var o = S3Options()
        o.blockSize = 64 << 10
        let store = try open("warm", options: o) as! S3ObjectStore
        var rng = SeededGenerator(seed: 9)
        var objects = [(key: ObjectKey, size: Int64)](), bodies = [ObjectKey: [UInt8]]()
        for i in 0..<24 {
            let b = rng.bytes(1000 + 4000 * i)
            let key = try k("w/o\(i)")
            try store.put(key, b)
            objects.append((key, Int64(b.count)))
            bodies[key] = b
        }
        let big = rng.bytes(200 << 10)
        try store.put(k("w/big"), big)
        let before = store.requestCounts.requests
        // 24 small ones (the last few are above the 64 KiB block, so skipped), a wrong size, a
        // missing object, and one larger than a block.
        let fits = objects.filter { $0.size <= 64 << 10 }
        let started = store.warm(objects + [(try k("w/o0"), 5), (try k("w/missing"), 100), (try k("w/big"), Int64(big.count))])
        #expect(fits.count > 10 && fits.count < objects.count)
        #expect(started == fits.count)
        let sent = store.requestCounts.requests - before
        // One GET each, one more for the wrong-size entry of w/o0 and one for the missing
        // object; none for w/big.
        #expect(sent == fits.count + 2, "\(sent) requests")
        // Opening and reading each warmed object sends nothing more, and gets its bytes.
        let mid = store.requestCounts.requests
        for (key, _) in fits {
            let r = try store.openReader(key)
            var buf = [UInt8](repeating: 0, count: Int(r.size))
            let n = try buf.withUnsafeMutableBytes { try r.read(at: 0, into: $0) }
            #expect(n == buf.count && buf == bodies[key])
        }
        #expect(store.requestCounts.requests == mid, "\(store.requestCounts.requests - mid) requests for warmed objects")
        // An entry is taken once: a second open sends its own GET.
        _ = try store.openReader(fits[0].key)
        #expect(store.requestCounts.requests == mid + 1)
        // Objects opened ahead and not yet opened hold at most half the cache's budget, across
        // calls: with 128 KiB (half of 256 KiB), a second call adds only what still fits.
        var small = S3Options()
        small.blockSize = 64 << 10
        small.cacheMemory = 256 << 10
        let tight = try open("warm-budget", options: small) as! S3ObjectStore
        for (key, _) in fits { try tight.put(key, bodies[key]!) }
        let half = fits.count / 2
        let first = tight.warm(Array(fits.prefix(half))), second = tight.warm(Array(fits.suffix(from: half)))
        // The first 8 (1,000 to 29,000 bytes: 120,000) fit; none of the rest (33,000 and more)
        // fits in the 11,072 bytes left.
        #expect(half == 8 && first == 8 && second == 0, "\(first) + \(second) of \(fits.count)")
        // Without the block cache, warm does nothing.
        var none = S3Options()
        none.blockSize = 0
        let plain = try open("warm-nocache", options: none)
        #expect(plain.warm(fits) == 0)
    }

    @Test("connections are reused: many requests, few TCP connections")
    func connectionReuse() throws {
        // moto answers every request with "Connection: close", so reuse is measured through
        // the loopback proxy, which keeps client connections alive (HTTP/1.1) and opens its own
        // to moto. Counted by libcurl for this store alone (CURLINFO_NUM_CONNECTS).
        let server = S3TestServer.shared
        let proxy = try FaultProxy(upstream: server.endpoint, fault: "none", rate: 0)
        defer { _ = proxy.stop() }
        var env = server.environment()
        env["AWS_ENDPOINT_URL"] = proxy.endpoint
        let store = try ObjectStores.open(url: server.freshURL("reuse"), environment: env) as! S3ObjectStore
        try store.put(k("o"), [UInt8](repeating: 7, count: 1000))
        let before = store.requestCounts.connections
        for i in 0..<200 { _ = try store.get(k("o"), range: Int64(i)..<Int64(i + 10)) }
        let after = store.requestCounts.connections
        #expect(before >= 1)
        #expect(after - before <= 1, "\(after - before) new connections for 200 sequential requests")
    }
}

@Suite("s3:// configuration, signing input, XML and retries (no I/O)")
struct S3PureTests {
    @Test("s3:// URLs, endpoints, regions, addressing and credentials resolve from options, variables and profiles")
    func resolve() throws {
        let dir = TempDir()
        let creds = dir.sub("credentials")
        try writeFile(creds, Array("# c\n[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n[other]\naws_access_key_id=AKIDOTHER\naws_secret_access_key=SECRETTWO\naws_session_token = TOKENVALUE\n".utf8))
        let env = ["HOME": dir.path, "AWS_SHARED_CREDENTIALS_FILE": creds]
        let c1 = try S3Config.resolve(url: "s3://my-bucket/some/prefix/", options: S3Options(), environment: env)
        #expect(c1.bucket == "my-bucket" && c1.prefix == "some/prefix" && c1.region == "us-east-1")
        #expect(c1.endpoint == "https://s3.us-east-1.amazonaws.com" && c1.addressing == .virtual)
        #expect(c1.credentials.accessKey == "AKIDDEFAULT" && c1.credentials.secretKey == "s1")
        var o = S3Options()
        o.profile = "other"; o.region = "eu-west-2"
        let c2 = try S3Config.resolve(url: "s3://b.with.dots", options: o, environment: env)
        #expect(c2.credentials.sessionToken == "TOKENVALUE" && c2.addressing == .path && c2.endpoint == "https://s3.eu-west-2.amazonaws.com")
        #expect(!c2.description.contains("SECRETTWO") && !c2.description.contains("TOKENVALUE") && c2.description.contains("AKIDOTHER"))
        let c3 = try S3Config.resolve(url: "s3://bkt", options: S3Options(), environment: env.merging(
            ["AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "senv", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000/", "AWS_REGION": "ap-south-1"]) { $1 })
        #expect(c3.credentials.accessKey == "AKENV" && c3.endpoint == "http://127.0.0.1:9000" && c3.addressing == .path && c3.region == "ap-south-1")
        for bad in ["s3://", "s3://A", "s3://ab", "s3://-abc", "s3://bucket/../x", "s3://bucket/a//b"] {
            #expect(throws: ObjectStoreError.self, "\(bad)") { _ = try S3Config.resolve(url: bad, options: S3Options(), environment: env) }
        }
        var e2 = S3Options(); e2.endpoint = "ftp://x"
        #expect(throws: ObjectStoreError.self) { _ = try S3Config.resolve(url: "s3://bkt", options: e2, environment: env) }
        #expect(throws: ObjectStoreError.self) { _ = try S3Config.resolve(url: "s3://bkt", options: S3Options(), environment: ["HOME": dir.sub("none")]) }
    }

    @Test("virtual-host and path-style URLs; queries sorted and encoded as SigV4 canonicalises them")
    func urls() throws {
        let env = ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"]
        let v = try S3ObjectStore(config: try S3Config.resolve(url: "s3://bkt/pre", options: S3Options(), environment: env))
        #expect(v.requestURL("pre/a/b") == "https://bkt.s3.us-east-1.amazonaws.com/pre/a/b")
        #expect(v.requestURL(nil, query: [("prefix", "pre/x y"), ("list-type", "2"), ("max-keys", "5")])
                == "https://bkt.s3.us-east-1.amazonaws.com/?list-type=2&max-keys=5&prefix=pre%2Fx%20y")
        var o = S3Options(); o.endpoint = "http://127.0.0.1:5000"
        let p = try S3ObjectStore(config: try S3Config.resolve(url: "s3://bkt", options: o, environment: env))
        #expect(p.requestURL("k", query: [("uploads", "")]) == "http://127.0.0.1:5000/bkt/k?uploads=")
        #expect(p.requestURL("k", query: [("uploadId", "x~y+z"), ("partNumber", "3")]) == "http://127.0.0.1:5000/bkt/k?partNumber=3&uploadId=x~y%2Bz")
        #expect(S3ObjectStore.uriEncode("a-Z_0.~/é", keepSlash: true) == "a-Z_0.~/%C3%A9")
    }

    @Test("ListObjectsV2 and error bodies parse; entities decode")
    func xml() {
        let body = Array("""
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><IsTruncated>true</IsTruncated>
            <Contents><Key>p/a&amp;b</Key><LastModified>2026-11-26T11:48:15.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>42</Size></Contents>
            <Contents><Key>p/c</Key><Size>0</Size></Contents></ListBucketResult>
            """.utf8)
        let page = S3XML.listPage(body)
        #expect(page?.isTruncated == true)
        #expect(page?.entries.map(\.key) == ["p/a&b", "p/c"])
        #expect(page?.entries.first?.etag == "\"abc\"" && page?.entries.first?.size == 42)
        #expect(S3XML.parseISO8601("2026-11-26T11:48:15.000Z") == 1_795_693_695)
        #expect(S3ObjectStore.parseHTTPDate("Thu, 26 Nov 2026 11:48:15 GMT") == 1_795_693_695)
        #expect(S3XML.listPage(Array("<ListBucketResult><Contents><Key>x</Key><Size>-1</Size></Contents></ListBucketResult>".utf8)) == nil)
        let err = S3XML.error(Array("<Error><Code>SlowDown</Code><Message>Please &lt;reduce&gt;</Message></Error>".utf8))
        #expect(err?.code == "SlowDown" && err?.message == "Please <reduce>")
        #expect(S3XML.unescape("&#65;&#x42;&bogus;&") == "AB&bogus;&")
    }

    @Test("fuzz: the XML parsers never crash on random or mutated bodies")
    func fuzzXML() {
        var rng = SeededGenerator(seed: 99)
        let seeds = [
            "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Size>1</Size><ETag>\"e\"</ETag></Contents></ListBucketResult>",
            "<Error><Code>NoSuchKey</Code><Message>m</Message></Error>",
            "<InitiateMultipartUploadResult><UploadId>abc</UploadId></InitiateMultipartUploadResult>",
        ].map { Array($0.utf8) }
        let alphabet = Array("<>/&;#x0123456789ListBucketResultContentsKeySizeErrorCodeUploadId\"amp ".utf8)
        for i in 0..<20_000 {
            var b = seeds[i % seeds.count]
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let pos = Int.random(in: 0...b.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: if !b.isEmpty { b.remove(at: min(pos, b.count - 1)) }
                case 1: b.insert(alphabet[Int.random(in: 0..<alphabet.count, using: &rng)], at: pos)
                case 2: b.insert(UInt8.random(in: 0...255, using: &rng), at: pos)
                default: b = Array(b[0..<pos])
                }
            }
            _ = S3XML.listPage(b); _ = S3XML.error(b); _ = S3XML.uploadID(b)
            _ = S3XML.parseISO8601(String(decoding: b.prefix(24), as: UTF8.self))
        }
        for _ in 0..<2000 {
            let b = rng.bytes(Int.random(in: 0...300, using: &rng))
            _ = S3XML.listPage(b); _ = S3XML.error(b); _ = S3XML.uploadID(b)
        }
    }

    @Test("retry schedule: exponential with full jitter, bounded by attempts and total time")
    func retrySchedule() {
        let p = RetryPolicy(maxAttempts: 5, totalTime: 10, baseDelay: 0.1, maxDelay: 1)
        #expect(p.delay(after: 1, elapsed: 0, random: 0.999)! < 0.1 + 1e-9)
        #expect(abs(p.delay(after: 3, elapsed: 0, random: 0.5)! - 0.2) < 1e-9)
        #expect(abs(p.delay(after: 4, elapsed: 0, random: 0.999)! - 0.8 * 0.999) < 1e-9)
        #expect(p.delay(after: 5, elapsed: 0, random: 0.5) == nil, "attempts exhausted")
        #expect(p.delay(after: 2, elapsed: 9.99, random: 0.9) == nil, "time budget exhausted")
        let capped = RetryPolicy(maxAttempts: 50, totalTime: 1000, baseDelay: 0.1, maxDelay: 1)
        #expect(capped.delay(after: 30, elapsed: 0, random: 0.999)! <= 1)
        for s in [500, 502, 503, 504, 429] { #expect(RetryPolicy.isRetryable(status: s)) }
        for s in [400, 403, 404, 412, 416] { #expect(!RetryPolicy.isRetryable(status: s)) }
        #expect(TransportError(code: 56, message: "").isRetryable && TransportError(code: 28, message: "").isRetryable)
        #expect(!TransportError(code: 60, message: "cert").isRetryable, "certificate failures are not retried")
    }

    @Test("a ranged body cut short is detected (and so retried)")
    func shortBody() {
        let v = S3ObjectStore.validateRange(offset: 100, count: 50)
        #expect(v(HTTPResponse(status: 206, headers: ["content-range": "bytes 100-149/1000"], body: [], received: 50)) == nil)
        #expect(v(HTTPResponse(status: 206, headers: ["content-range": "bytes 100-149/1000"], body: [], received: 20)) != nil)
        #expect(v(HTTPResponse(status: 206, headers: ["content-range": "bytes 101-149/1000"], body: [], received: 49)) != nil)
        #expect(v(HTTPResponse(status: 206, headers: [:], body: [], received: 50)) != nil)
    }
}
