import Foundation
import ObjectStore
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("file:// object store")
struct FileObjectStoreTests {
    func k(_ s: String) throws(ObjectStoreError) -> ObjectKey { try ObjectKey(s) }

    @Test("put, ranged get, head, overwrite, delete")
    func basics() throws {
        let dir = TempDir()
        try StoreContract.basics(try ObjectStores.open(url: "file://" + dir.sub("store"), create: true))
    }

    @Test("create-if-absent refuses to replace, and changes nothing")
    func ifAbsent() throws {
        let dir = TempDir()
        try StoreContract.createIfAbsent(try FileObjectStore(root: dir.path))
    }

    @Test("ifMatch: an object replaced since it was opened gives preconditionFailed")
    func ifMatch() throws {
        let dir = TempDir()
        let store = try FileObjectStore(root: dir.path)
        let tag = try store.put(k("o"), [1, 2, 3]).etag
        var buf = [UInt8](repeating: 0, count: 3)
        _ = try buf.withUnsafeMutableBytes { try store.read(k("o"), at: 0, into: $0, ifMatch: tag) }
        try store.put(k("o"), [4, 5, 6, 7])
        #expect(throws: ObjectStoreError(.preconditionFailed, key: "o", "object changed since it was opened")) {
            _ = try buf.withUnsafeMutableBytes { try store.read(k("o"), at: 0, into: $0, ifMatch: tag) }
        }
    }

    @Test("warm: an object of the expected size is read into the page cache in the background; missing, wrong-size and non-regular objects are skipped")
    func warm() throws {
        let dir = TempDir()
        let store = try FileObjectStore(root: dir.path)
        var rng = SeededGenerator(seed: 5)
        let a = rng.bytes(256 << 10), b = rng.bytes(64 << 10)
        try store.put(k("w/a"), a)
        try store.put(k("w/b"), b)
        try #require(mkfifo(dir.sub("w/fifo"), 0o600) == 0)
        func resident(_ name: String, _ pages: Int) -> [Bool] {
            let fd = open(dir.sub(name), O_RDONLY)
            defer { close(fd) }
            return residentPages(fd, pages: pages)
        }
        for n in ["w/a", "w/b"] { dropPageCache(dir.sub(n)) }
        try #require(resident("w/a", 64) == Array(repeating: false, count: 64), "the page cache of \(dir.path) cannot be dropped (tmpfs?)")
        // One object started: a (b's size is not the one expected, the others are not objects).
        let started = store.warm([(try k("w/a"), Int64(a.count)), (try k("w/b"), 1), (try k("w/missing"), 10), (try k("w/fifo"), 0)])
        #expect(started == 1)
        #expect(eventually { resident("w/a", 64) == Array(repeating: true, count: 64) }, "a is not resident: \(resident("w/a", 64))")
        #expect(resident("w/b", 16) == Array(repeating: false, count: 16))
        // Nothing changed: the object reads back the same, and nothing was written.
        #expect(try store.get(k("w/a")).bytes == a)
        #expect(try store.listAll(prefix: "w/").map(\.key.rawValue) == ["w/a", "w/b"])
    }

    @Test("readahead: a sequential stream of large reads makes the kernel read the window ahead of it; readahead 0 and scattered reads do not")
    func readahead() throws {
        let dir = TempDir()
        let body = [UInt8](repeating: 0x5a, count: 64 << 20)
        try FileObjectStore(root: dir.path).put(k("big"), body)
        /// Whether every page of [from, to) MiB of the object is resident, or none is.
        func resident(_ from: Int, _ to: Int) -> (all: Bool, none: Bool) {
            let fd = open(dir.sub("big"), O_RDONLY)
            defer { close(fd) }
            let pages = residentPages(fd, pages: to << 8).suffix((to - from) << 8)
            return (!pages.isEmpty && pages.allSatisfy { $0 }, pages.allSatisfy { !$0 })
        }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        func read(_ r: any ObjectReader, at mib: Int) throws {
            let n = try buf.withUnsafeMutableBytes { try r.read(at: Int64(mib) << 20, into: $0) }
            #expect(n == 1 << 20 && buf == Array(body[(mib << 20)..<((mib + 1) << 20)]))
        }
        for window: Int64 in [16 << 20, 0] {
            dropPageCache(dir.sub("big"))
            try #require(resident(0, 64).none, "the page cache of \(dir.path) cannot be dropped (tmpfs?)")
            let store = try FileObjectStore(root: dir.path, readahead: window)
            let r = try store.openReader(k("big"))
            try read(r, at: 0)
            try read(r, at: 1)
            if window > 0 {
                #expect(eventually { resident(12, 17).all }, "MiB 12-17 not resident after a 2 MiB stream with a 16 MiB window")
            } else {
                usleep(300_000)
                #expect(resident(12, 17).none, "MiB 12-17 read ahead with readahead 0")
            }
            #expect(resident(40, 64).none)
        }
        // Scattered large reads are not a stream: nothing is asked for beyond the kernel's own
        // readahead of each read.
        dropPageCache(dir.sub("big"))
        let r = try FileObjectStore(root: dir.path, readahead: 16 << 20).openReader(k("big"))
        try read(r, at: 40)
        try read(r, at: 20)
        usleep(300_000)
        #expect(resident(50, 64).none && resident(28, 36).none)
        // A new pass from the start, after reads further on, is a new stream.
        try read(r, at: 0)
        try read(r, at: 1)
        #expect(eventually { resident(12, 17).all }, "a second pass from the start got no readahead")
    }

    @Test("an aborted writer leaves neither the object nor a temp file; readers never see partial objects")
    func atomic() throws {
        let dir = TempDir()
        let store = try FileObjectStore(root: dir.path)
        try store.put(k("x"), [9, 9])
        let w = try store.makeWriter(k("x"), ifAbsent: false)
        try [1, 2, 3].withUnsafeBytes { try w.write($0) }
        #expect(try store.get(k("x")).bytes == [9, 9], "uncommitted bytes are invisible")
        w.abort()
        #expect(try store.get(k("x")).bytes == [9, 9])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/.cce4-tmp").isEmpty)
        #expect(try store.listAll(prefix: "").map(\.key.rawValue) == ["x"], "temp files never appear in listings")
    }

    @Test("list by prefix, sorted bytewise, paginated with startAfter")
    func listing() throws {
        let dir = TempDir()
        let store = try FileObjectStore(root: dir.path)
        var keys = [String]()
        for i in 0..<250 { keys.append("ds/objects/\(String(format: "%02x", i % 16))/obj\(i)") }
        keys += ["ds/versions/v1", "other/x", "ds2/y"]
        for key in keys { try store.put(k(key), [UInt8(key.count % 256)]) }
        var seen = [String]()
        var after: ObjectKey? = nil
        repeat {
            let page = try store.list(prefix: "ds/objects/", startAfter: after, maxKeys: 37)
            #expect(page.objects.count <= 37)
            seen += page.objects.map(\.key.rawValue)
            after = page.nextStartAfter
        } while after != nil
        let expected = keys.filter { $0.hasPrefix("ds/objects/") }.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        #expect(seen == expected)
        #expect(try store.listAll(prefix: "ds").count == 251 + 1)
        #expect(try store.listAll(prefix: "ds/").count == 251)
        #expect(try store.listAll(prefix: "zzz").isEmpty)
    }

    @Test("keys that could escape the store or hide in temp space are refused")
    func badKeys() {
        for bad in ["", "/abs", "a/../b", "..", "a//b", "a/./b", "a b", "a\u{0}b", ".cce4-tmp/x", "ä", String(repeating: "a", count: 1025)] {
            #expect(throws: ObjectStoreError.self, "\(bad)") { try ObjectKey(bad) }
        }
    }

    @Test("the one-pass key check accepts exactly what the component rules accept (200,000 random keys)")
    func keyCheckMatchesRules() {
        // The rules, written plainly: allowed bytes; no empty, ".", ".." or ".cce4-…" component.
        func reference(_ raw: String) -> Bool {
            let u = Array(raw.utf8)
            guard !u.isEmpty, u.count <= 1024 else { return false }
            for c in u where !((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c == 0x2f || c == 0x2d || c == 0x5f || c == 0x2e) { return false }
            for comp in raw.split(separator: "/", omittingEmptySubsequences: false) where comp.isEmpty || comp == "." || comp == ".." || comp.hasPrefix(".cce4-") { return false }
            return true
        }
        let r = differentialKeyCheck(alphabet: "./-ce4a_Z ", maxLength: 9, seed: 77, { (try? ObjectKey($0)) != nil }, reference: reference)
        #expect(r.mismatch == nil, "the one-pass check and the rules disagree on \(r.mismatch ?? "")")
        #expect(r.accepted > 1000)
        #expect((try? ObjectKey(".cce4-")) == nil && (try? ObjectKey("a/.cce4-x")) == nil && (try? ObjectKey(".cce4")) != nil && (try? ObjectKey("...")) != nil)
    }

    @Test("store URLs: a missing directory, a file, and unknown schemes give clear errors")
    func urls() throws {
        let dir = TempDir()
        do throws(ObjectStoreError) { _ = try ObjectStores.open(url: "file://" + dir.sub("missing")); Issue.record("opened a missing store") } catch {
            #expect(error.code == .notFound && error.description.contains("does not exist"))
        }
        try writeFile(dir.sub("f"), [1])
        #expect(throws: ObjectStoreError.self) { try ObjectStores.open(url: "file://" + dir.sub("f")) }
        #expect(throws: ObjectStoreError.self) { try ObjectStores.open(url: "ftp://x") }
        #expect(throws: ObjectStoreError.self) { try ObjectStores.open(url: "file://") }
    }

    @Test("a full disk gives noSpace, and leaves no partial object or temp file behind")
    func fullDisk() throws {
        let disk = try Tmpfs(size: "1m")
        let mnt = disk.path
        let store = try FileObjectStore(root: mnt)
        try store.put(k("keep"), [1, 2, 3])
        do throws(ObjectStoreError) {
            try store.put(k("big"), [UInt8](repeating: 7, count: 3 << 20))
            Issue.record("a 3 MiB object fit in 1 MiB")
        } catch {
            #expect(error.code == .noSpace)
        }
        #expect(throws: ObjectStoreError.self) { try store.head(k("big")) }
        #expect(try store.get(k("keep")).bytes == [1, 2, 3])
        #expect(try FileManager.default.contentsOfDirectory(atPath: mnt + "/.cce4-tmp").isEmpty)
    }

    @Test("concurrent readers and writers see whole objects only")
    func concurrency() throws {
        let dir = TempDir()
        let store = try FileObjectStore(root: dir.path)
        let a = [UInt8](repeating: 0xaa, count: 200_000), b = [UInt8](repeating: 0xbb, count: 300_000)
        try store.put(k("hot"), a)
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            for j in 0..<40 {
                if i == 0 { _ = try? store.put(try! ObjectKey("hot"), j % 2 == 0 ? b : a) }
                else if let got = try? store.get(try! ObjectKey("hot")).bytes {
                    #expect(got == a || got == b, "torn read of \(got.count) bytes")
                }
            }
        }
    }
}
