// Real FUSE mounts of packed datasets: POSIX tools, Python readers, tampering, EROFS.
import Foundation
import TestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The stores the mount suite runs over: the same tree, the same checks.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case file, s3
    var testDescription: String { rawValue + "://" }
}

/// A source tree of 1,000+ files in nested folders, the demo's research files, a 100+ MiB
/// file, boundary sizes and a symlink (built once), packed into each kind of store (once per
/// kind), shared by the mount tests.
final class SourceTree: @unchecked Sendable {
    static let shared: SourceTree = try! SourceTree()
    let dir = TempDir("cce4-mount")
    var src: String { dir.sub("src") }
    var key: String { dir.sub("k") }
    var files: [String] = []

    init() throws {
        let src = dir.sub("src")
        var rng = SeededGenerator(seed: 7)
        var files = [String]()
        // 1,000 small files over 10 × 10 nested folders.
        for i in 0..<1000 {
            let path = "cohort/site\(i % 10)/batch\((i / 10) % 10)/sample_\(i).bin"
            try writeFile(src + "/" + path, rng.bytes(Int.random(in: 0...9000, using: &rng)))
            files.append(path)
        }
        // Segment boundaries (16 KiB segments: first segment holds 16,328 bytes, later ones 16,368).
        for (name, n) in [("zero", 0), ("one", 1), ("seg-1", 16327), ("seg", 16328), ("seg+1", 16329), ("two-seg", 16328 + 16368), ("many", 1_000_003)] {
            try writeFile(src + "/sizes/\(name).bin", rng.bytes(n))
            files.append("sizes/\(name).bin")
        }
        try writeFile(src + "/large/genome.bin", try randomBytes(100 << 20 + 4321))
        files.append("large/genome.bin")
        try FileManager.default.createSymbolicLink(atPath: src + "/latest", withDestinationPath: "sizes/many.bin")
        let demo = try run(Repo.python, [Repo.root + "/scripts/make_demo_data.py", src + "/research"])
        precondition(demo.status == 0, demo.stderr)
        self.files = files
    }
}

/// The source tree packed into one store: file:// in a temp directory, or s3:// on the test
/// server (moto), in parts of 4 MiB: moto reads a whole object for every ranged GET, so big
/// objects would make the server, not cce4fs, the bottleneck (docs/s3.md).
final class BigFixture: @unchecked Sendable {
    static let file: BigFixture = try! BigFixture(.file)
    static let s3: BigFixture = try! BigFixture(.s3)
    static func shared(_ kind: StoreKind) -> BigFixture { kind == .file ? file : s3 }

    let kind: StoreKind
    let tree = SourceTree.shared
    let dir = TempDir("cce4-mount-store")
    let store: String
    let root: String
    var src: String { tree.src }
    var key: String { tree.key }
    /// cce4fs -o options that reach the store (none for file://).
    let storeOptions: [String]
    /// A store URL that does not exist, for the error checks.
    let missingStore: String

    init(_ kind: StoreKind) throws {
        self.kind = kind
        switch kind {
        case .file:
            store = "file://" + dir.sub("store")
            storeOptions = []
            missingStore = "file://" + dir.sub("nostore")
            root = try packWithCLI(source: tree.src, store: store, dataset: "big", keyFile: tree.key)
        case .s3:
            let server = S3TestServer.shared
            store = server.freshURL("mount")
            storeOptions = server.mountOptions
            missingStore = "s3://no-such-bucket-cce4/x"
            root = try packWithCLI(source: tree.src, store: store, dataset: "big", keyFile: tree.key,
                                   extra: server.cliOptions + ["--part-size", String(4 << 20)])
        }
    }

    func mount(_ name: String, extra: [String] = []) throws -> TestMount {
        try TestMount(store: store, mountpoint: dir.sub(name), dataset: "big", root: root, keyFile: key, extra: storeOptions + extra)
    }

    /// Starts `cce4fs -f` with `options` at a fresh mount point `name` and waits until the
    /// mount is live; its stderr goes to `stderr`. The caller ends the process (and should
    /// `umount -l` the path in a defer, in case it fails first).
    func foreground(_ name: String, options: [String], stderr: FileHandle = .nullDevice) throws -> (process: Process, path: String) {
        let mnt = dir.sub(name)
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Repo.binary("cce4fs"))
        p.arguments = [store, mnt, "-f", "-o", (["dataset=big,root=\(root),insecure_key_file=\(key)"] + storeOptions + options).joined(separator: ",")]
        p.standardError = stderr
        try p.run()
        var live = false
        for _ in 0..<100 where !live {
            usleep(50_000)
            live = (try String(contentsOfFile: "/proc/mounts", encoding: .utf8)).contains(mnt + " ")
        }
        #expect(live, "\(name): the mount did not come up")
        return (p, mnt)
    }
}

func randomBytes(_ n: Int) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: n)
    let fd = open("/dev/urandom", O_RDONLY)
    defer { close(fd) }
    var done = 0
    while done < n { done += out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, n - done) } }
    return out
}

func shell(_ script: String) throws -> ProcessResult { try run("/bin/bash", ["-c", script]) }

/// pread through both trees; returns the errno on failure.
func preadAll(_ path: String, _ offset: Int, _ count: Int) -> ([UInt8], Int32) {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return ([], errno) }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
        if n < 0 { return ([], errno) }
        if n == 0 { break }
        done += n
    }
    return (Array(buf[0..<done]), 0)
}

@Suite("cce4fs mounts", .serialized)
struct MountTests {
    @Test("find, stat and sha256 of every file through the mount equal the source", arguments: StoreKind.allCases)
    func treeMatches(_ kind: StoreKind) throws {
        let fx = BigFixture.shared(kind)
        let m = try fx.mount("m-tree")
        defer { m.unmount() }
        // Names, kinds, sizes of files and links, permissions, mtimes, link targets.
        let listing = { (root: String) throws -> String in
            try shell("cd '\(root)' && find . -mindepth 1 \\( -type f -printf '%P|f|%m|%T@|%s\\n' \\) -o \\( -type l -printf '%P|l|%T@|%l\\n' \\) -o \\( -type d -printf '%P|d|%m|%T@\\n' \\) | LC_ALL=C sort").stdoutText
        }
        let a = try listing(fx.src), b = try listing(m.path)
        #expect(a.split(separator: "\n").count > 1000)
        #expect(a == b)
        let sums = { (root: String) throws -> String in
            try shell("cd '\(root)' && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum").stdoutText
        }
        let sa = try sums(fx.src), sb = try sums(m.path)
        #expect(sa.split(separator: "\n").count >= 1008)
        #expect(sa == sb)
        // ls -l agrees on everything but directory sizes (entry counts here, 4096 on ext4).
        let ls = try shell("ls -ln --time-style=+%s '\(m.path)/sizes'")
        #expect(ls.status == 0 && ls.stdoutText.contains("1000003"))
        let st = try shell("stat -c '%h %s %F' '\(m.path)/latest' '\(m.path)/cohort'")
        #expect(st.stdoutText == "1 14 symbolic link\n12 10 directory\n")
    }

    @Test("10,000 random preads and 8 concurrent readers get the source's bytes", arguments: StoreKind.allCases)
    func randomReads(_ kind: StoreKind) throws {
        let fx = BigFixture.shared(kind)
        let m = try fx.mount("m-reads")
        defer { m.unmount() }
        let files = ["large/genome.bin", "sizes/many.bin", "sizes/seg+1.bin", "sizes/two-seg.bin", "cohort/site3/batch4/sample_43.bin"]
        var rng = SeededGenerator(seed: 10)
        for i in 0..<10_000 {
            let f = files[i % files.count]
            let size = (try FileManager.default.attributesOfItem(atPath: fx.src + "/" + f)[.size] as! NSNumber).intValue
            let off = Int.random(in: 0...size, using: &rng)
            let len = [1, 100, 4096, 16384, 131_072, 1 << 20][Int.random(in: 0..<6, using: &rng)]
            let (a, ea) = preadAll(fx.src + "/" + f, off, len), (b, eb) = preadAll(m.path + "/" + f, off, len)
            if ea != 0 || eb != 0 || !bytesEqual(a, b) { Issue.record("pread \(f) @\(off)+\(len): errno \(eb), \(b.count) vs \(a.count) bytes"); return }
        }
        final class Failures: @unchecked Sendable { var n = 0; let lock = NSLock() }
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            var rng = SeededGenerator(seed: UInt64(100 + t))
            // Threads 0-3 share one file; 4-7 read different ones.
            let f = t < 4 ? "large/genome.bin" : files[t - 3]
            let size = (try? FileManager.default.attributesOfItem(atPath: fx.src + "/" + f)[.size] as? NSNumber)?.intValue ?? 0
            for _ in 0..<300 {
                let off = Int.random(in: 0...size, using: &rng), len = Int.random(in: 1...300_000, using: &rng)
                let (a, _) = preadAll(fx.src + "/" + f, off, len), (b, e) = preadAll(m.path + "/" + f, off, len)
                if e != 0 || !bytesEqual(a, b) { failures.lock.lock(); failures.n += 1; failures.lock.unlock() }
            }
        }
        #expect(failures.n == 0)
    }

    @Test("pandas, pyarrow (column subset), numpy mmap and h5py read the mount as the source", arguments: StoreKind.allCases)
    func python(_ kind: StoreKind) throws {
        let fx = BigFixture.shared(kind)
        let m = try fx.mount("m-python")
        defer { m.unmount() }
        let script = Repo.root + "/Tests/interop/read_mounted.py"
        let a = try run(Repo.python, [script, fx.src + "/research"])
        let b = try run(Repo.python, [script, m.path + "/research"])
        try #require(a.status == 0, "\(a.stderr)")
        #expect(b.status == 0, "\(b.stderr)")
        #expect(a.stdoutText == b.stdoutText)
        #expect(b.stdoutText.contains("\"mmap\": true"))
    }

    @Test("every write-like operation fails with EROFS", arguments: StoreKind.allCases)
    func readOnly(_ kind: StoreKind) throws {
        let fx = BigFixture.shared(kind)
        let m = try fx.mount("m-ro")
        defer { m.unmount() }
        let f = m.path + "/sizes/one.bin", d = m.path + "/cohort"
        func expectEROFS(_ what: String, _ rc: Int32) {
            #expect(rc == -1 && errno == EROFS, "\(what): rc \(rc) errno \(errno)")
        }
        expectEROFS("open O_WRONLY", open(f, O_WRONLY))
        expectEROFS("open O_RDWR", open(f, O_RDWR))
        expectEROFS("open O_TRUNC", open(f, O_RDONLY | O_TRUNC))
        expectEROFS("create", open(d + "/new.txt", O_CREAT | O_WRONLY, 0o644))
        expectEROFS("mkdir", mkdir(d + "/newdir", 0o755))
        expectEROFS("rmdir", rmdir(m.path + "/sizes"))
        expectEROFS("unlink", unlink(f))
        expectEROFS("rename", rename(f, m.path + "/sizes/renamed"))
        expectEROFS("symlink", symlink("x", d + "/ln"))
        expectEROFS("link", link(f, d + "/hard"))
        expectEROFS("chmod", chmod(f, 0o600))
        expectEROFS("chown", chown(f, 1, 1))
        expectEROFS("truncate", truncate(f, 0))
        expectEROFS("utimes", utimes(f, nil))
        expectEROFS("mknod", mknod(d + "/fifo", S_IFIFO | 0o644, 0))
        #expect(access(f, W_OK) == -1 && errno == EROFS)
        #expect(access(f, R_OK) == 0)
        // xattr calls are not in Swift's Glibc module: ask Python's os module (same syscalls).
        let xattrs = try run(Repo.python, ["-c", """
            import os, sys
            f, r = sys.argv[1], []
            for op in (lambda: os.setxattr(f, "user.x", b"v"), lambda: os.removexattr(f, "user.x"), lambda: os.getxattr(f, "user.x")):
                try:
                    op(); r.append(0)
                except OSError as e:
                    r.append(e.errno)
            r.append(len(os.listxattr(f)))
            print(r)
            """, f])
        #expect(xattrs.stdoutText == "[\(EROFS), \(EROFS), \(ENODATA), 0]\n", "setxattr, removexattr, getxattr, listxattr: \(xattrs.stdoutText) \(xattrs.stderr)")
        var sv = statvfs()
        #expect(statvfs(m.path, &sv) == 0 && sv.f_flag & UInt(ST_RDONLY) != 0 && sv.f_namemax == 255)
    }

    @Test("mount -t fuse.cce4fs and umount work, as in fstab", arguments: StoreKind.allCases)
    func mountCommand(_ kind: StoreKind) throws {
        let fx = BigFixture.shared(kind)
        let mnt = fx.dir.sub("m-mount8")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        // mount(8) runs mount.fuse3 with a fixed PATH, which runs `cce4fs` from it. So that
        // the test installs nothing on the host, it runs in a private mount namespace where a
        // tmpfs over /usr/local/bin holds a link to the built binary.
        let script = """
            set -e
            mount -t tmpfs tmpfs /usr/local/bin
            ln -s '\(Repo.binary("cce4fs"))' /usr/local/bin/cce4fs
            mount -t fuse.cce4fs '\(fx.store)' '\(mnt)' -o '\((["dataset=big,root=\(fx.root),insecure_key_file=\(fx.key),allow_other,nofail,noexec"] + fx.storeOptions).joined(separator: ","))'
            grep ' \(mnt) fuse.cce4fs ro,' /proc/mounts | grep -q noexec
            cmp '\(mnt)/sizes/many.bin' '\(fx.src)/sizes/many.bin'
            umount '\(mnt)'
            ! grep -q ' \(mnt) ' /proc/mounts
            echo ALL-OK
            """
        let r = try run("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/bash", "-c", script])
        #expect(r.status == 0 && r.stdoutText.contains("ALL-OK"), "\(r.stdoutText) \(r.stderr)")
    }

    @Test("fusermount3 -u unmounts, and SIGTERM to a foreground mount unmounts cleanly", arguments: StoreKind.allCases)
    func unmountWays(_ kind: StoreKind) throws {
        let fx = BigFixture.shared(kind)
        // Unmounting at once, many times: the daemon must never hold its own mount busy
        // (its readahead tuning once stat()ed the mount point while INIT was pending: EBUSY).
        for _ in 0..<10 {
            let m = try fx.mount("m-fusermount")
            let r = try run("/bin/fusermount3", ["-u", m.path])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(!(try String(contentsOfFile: "/proc/mounts", encoding: .utf8)).contains(m.path + " "))
            m.unmount()
        }

        // libfuse's loop (spin=0), cce4fs's own (the default), and FUSE over io_uring.
        let restore = try Self.enableKernelUring()
        defer { restore() }
        for loop in [["spin=0"], [], ["uring=on", "spin=0"], ["uring=on"]] {
            let (p, mnt) = try fx.foreground("m-fg", options: loop)
            defer { _ = try? run("/bin/umount", ["-l", mnt]) }
            #expect(try run("/bin/ls", [mnt + "/sizes"]).stdoutText.contains("many.bin"))
            p.terminate()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "\(loop)")
            #expect(!(try String(contentsOfFile: "/proc/mounts", encoding: .utf8)).contains(mnt + " "))
        }
    }

    @Test("the default request loop (cce4fs's own) serves 8 parallel readers and a stat walk with the source's bytes, and unmounts; spin=0 is libfuse's",
          arguments: StoreKind.allCases)
    func spinLoop(_ kind: StoreKind) throws {
        let fx = BigFixture.shared(kind)
        let m = try fx.mount("m-spin", extra: ["threads=4"])
        defer { m.unmount() }
        // More readers than workers: handlers that hand off while others wait must not stall.
        let r = try Self.readInParallel(fx, m.path)
        let n = fx.tree.files.count - 1
        #expect(r.status == 0 && r.stdoutText == "\(n) \(n) 1000\n", "\(r.stdoutText) \(r.stderr)")
        // It is cce4fs's loop that served them: only it reads /dev/fuse non-blocking.
        let plain = try fx.mount("m-nospin", extra: ["spin=0"])
        defer { plain.unmount() }
        #expect(try Self.fuseDeviceNonBlocking(m.path) == true)
        #expect(try Self.fuseDeviceNonBlocking(plain.path) == false)
        let u = try run("/bin/fusermount3", ["-u", m.path])
        #expect(u.status == 0, "\(u.stderr)")
    }

    @Test("the request loop keeps the lead through a serial reader's store reads (lazy handoffs) and hands it over when several callers read at once (eager), checked from its statistics; every byte matches the source",
          arguments: StoreKind.allCases)
    func handoffModes(_ kind: StoreKind) throws {
        let fx = BigFixture.shared(kind)
        /// Runs `script` against a foreground mount, unmounts it, and returns the loop's
        /// handoff counts from its log.
        func counts(_ name: String, _ script: String) throws -> (lazy: Int, eager: Int) {
            let log = fx.dir.sub(name + ".log")
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let (p, mnt) = try fx.foreground(name, options: ["log_level=info", "threads=4"],
                                             stderr: try FileHandle(forWritingTo: URL(fileURLWithPath: log)))
            defer { _ = try? run("/bin/umount", ["-l", mnt]) }
            let r = try run(Repo.python, ["-c", script, fx.src, mnt])
            #expect(r.status == 0 && r.stdoutText == "ok\n", "\(name): \(r.stdoutText) \(r.stderr)")
            p.terminate()
            p.waitUntilExit()
            let text = try String(contentsOfFile: log, encoding: .utf8)
            func field(_ key: String) -> Int? {
                guard let line = text.split(separator: "\n").last(where: { $0.contains("request loop ended") }),
                      let at = line.range(of: key + "=") else { return nil }
                return Int(line[at.upperBound...].prefix { $0.isNumber })
            }
            let lazy = try #require(field("handoffs_lazy"), "\(name): no loop statistics in \(text)")
            let eager = try #require(field("handoffs_eager"))
            return (lazy, eager)
        }
        // One thread: 3,000 random 4 KiB reads of a 100 MiB file, each checked.
        let serial = try counts("m-serial", """
            import os, random, sys
            src, mnt = sys.argv[1], sys.argv[2]
            a = os.open(os.path.join(src, "large/genome.bin"), os.O_RDONLY)
            b = os.open(os.path.join(mnt, "large/genome.bin"), os.O_RDONLY)
            size = os.fstat(a).st_size
            rng = random.Random(7)
            for _ in range(3000):
                off = rng.randrange(0, size - 4096) & ~4095
                assert os.pread(a, 4096, off) == os.pread(b, 4096, off), off
            print("ok")
            """)
        #expect(serial.lazy >= 500 && serial.eager * 10 <= serial.lazy, "serial reader: \(serial)")
        // Eight threads at once, on distinct files and places.
        let parallel = try counts("m-parallel", """
            import os, random, sys
            from concurrent.futures import ThreadPoolExecutor
            src, mnt = sys.argv[1], sys.argv[2]
            def reads(seed):
                a = os.open(os.path.join(src, "large/genome.bin"), os.O_RDONLY)
                b = os.open(os.path.join(mnt, "large/genome.bin"), os.O_RDONLY)
                size, rng = os.fstat(a).st_size, random.Random(seed)
                for _ in range(500):
                    off = rng.randrange(0, size - 4096) & ~4095
                    if os.pread(a, 4096, off) != os.pread(b, 4096, off): return False
                return True
            with ThreadPoolExecutor(8) as ex:
                assert all(ex.map(reads, range(8)))
            print("ok")
            """)
        #expect(parallel.eager >= 500 && parallel.eager > parallel.lazy, "8 readers: \(parallel)")
    }

    @Test("uring=on: the kernel's per-CPU io_uring rings serve parallel readers, a 100 MiB read, random reads and a stat walk with the source's bytes, with and without spin=; fusermount3 -u unmounts",
          arguments: StoreKind.allCases)
    func uringTransport(_ kind: StoreKind) throws {
        let fx = BigFixture.shared(kind)
        let restore = try Self.enableKernelUring()
        defer { restore() }
        for spin in [["spin=0"], []] {
            let m = try fx.mount("m-uring", extra: ["uring=on", "threads=4"] + spin)
            defer { m.unmount() }
            let before = try Self.ringStats(m.path)
            // Threads pinned per CPU (2 per CPU with threads=4), each with its own ring.
            #expect(before.threads >= 2 && before.rings == before.threads, "\(before)")
            let r = try Self.readInParallel(fx, m.path, then: """
                import hashlib, random
                big = "large/genome.bin"
                h = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()
                rng = random.Random(7)
                size = os.path.getsize(os.path.join(src, big))
                with open(os.path.join(src, big), "rb") as a, open(os.path.join(mnt, big), "rb") as b:
                    rand = all(os.pread(a.fileno(), n, o) == os.pread(b.fileno(), n, o)
                               for o, n in ((rng.randrange(size), rng.choice([1, 4096, 70000, 1 << 20])) for _ in range(200)))
                print(h(os.path.join(src, big)) == h(os.path.join(mnt, big)), rand)
                """)
            let n = fx.tree.files.count - 1
            #expect(r.status == 0 && r.stdoutText == "\(n) \(n) 1000\nTrue True\n", "\(spin): \(r.stdoutText) \(r.stderr)")
            // The requests went through the rings: their completions count them.
            let after = try Self.ringStats(m.path)
            #expect(after.completions - before.completions > n, "\(spin): \(before) → \(after)")
            let u = try run("/bin/fusermount3", ["-u", m.path])
            #expect(u.status == 0, "\(u.stderr)")
        }
    }

    @Test("uring=on refuses to mount when the kernel has FUSE over io_uring off, saying how to turn it on; uring=auto then mounts on /dev/fuse; uring=bogus is a usage error")
    func uringUnavailable() throws {
        let fx = BigFixture.shared(.file)
        let restore = try Self.enableKernelUring(false)
        defer { restore() }
        let mnt = fx.dir.sub("m-uring-off")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let o = "dataset=big,root=\(fx.root),insecure_key_file=\(fx.key)"
        let on = try run(Repo.binary("cce4fs"), [fx.store, mnt, "-o", o + ",uring=on"])
        #expect(on.status == 64 && on.stderr.contains("enable_uring") && on.stderr.split(separator: "\n").count == 1, "\(on.stderr)")
        #expect(!(try String(contentsOfFile: "/proc/mounts", encoding: .utf8)).contains(mnt + " "))
        let bogus = try run(Repo.binary("cce4fs"), [fx.store, mnt, "-o", o + ",uring=yes"])
        #expect(bogus.status == 64 && bogus.stderr.contains("uring must be auto, on or off"), "\(bogus.stderr)")
        let m = try fx.mount("m-uring-auto", extra: ["uring=auto"])
        defer { m.unmount() }
        #expect(try run("/bin/ls", [m.path + "/sizes"]).stdoutText.contains("many.bin"))
        #expect(try Self.ringStats(m.path).threads == 0)
    }

    /// Reads every file of the fixture but large/ through `mountpoint` on 8 threads, in odd-sized
    /// chunks, and compares each with the source; walks cohort/; prints "SAME FILES WALKED".
    /// Then runs `then` (Python; `src` and `mnt` are the two roots).
    static func readInParallel(_ fx: BigFixture, _ mountpoint: String, then: String = "") throws -> ProcessResult {
        try run(Repo.python, ["-c", """
            import os, sys
            from concurrent.futures import ThreadPoolExecutor
            src, mnt, names = sys.argv[1], sys.argv[2], sys.argv[3:]
            def same(n):
                a = open(os.path.join(src, n), "rb").read()
                with open(os.path.join(mnt, n), "rb") as f:
                    b = b"".join(iter(lambda: f.read(7919), b""))
                return a == b and os.stat(os.path.join(mnt, n)).st_size == len(a)
            with ThreadPoolExecutor(8) as ex:
                ok = list(ex.map(same, names))
            walked = sum(len(fs) for _, _, fs in os.walk(os.path.join(mnt, "cohort")))
            print(sum(ok), len(ok), walked)
            """ + "\n" + then, fx.src, mountpoint] + fx.tree.files.filter { !$0.hasPrefix("large/") })
    }

    /// Sets the fuse module's enable_uring parameter (root); returns what puts it back.
    static func enableKernelUring(_ on: Bool = true) throws -> () -> Void {
        let path = "/sys/module/fuse/parameters/enable_uring"
        guard let old = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw TestFailure("this kernel has no FUSE over io_uring (\(path)): Linux 6.14 or later is needed")
        }
        try (on ? "1" : "0").write(toFile: path, atomically: false, encoding: .utf8)
        return { try? (old.hasPrefix("Y") ? "1" : "0").write(toFile: path, atomically: false, encoding: .utf8) }
    }

    /// The cce4fs serving `mountpoint`: its ring threads (named cce4fs-ringN), its io_uring
    /// descriptors, and the completions those rings have delivered (CqHead in fdinfo).
    static func ringStats(_ mountpoint: String) throws -> (threads: Int, rings: Int, completions: Int) {
        let r = try shell("""
            for p in $(pgrep -f -- ' \(mountpoint) '); do
              [ "$(cat /proc/$p/comm 2>/dev/null)" = cce4fs ] || continue
              cat /proc/$p/task/*/comm | grep -c '^cce4fs-ring' || true
              n=0; c=0
              for fd in /proc/$p/fd/*; do
                if [ "$(readlink "$fd")" = 'anon_inode:[io_uring]' ]; then
                  n=$((n+1)); c=$((c + $(awk '/^CqHead:/ {print $2}' "/proc/$p/fdinfo/${fd##*/}")))
                fi
              done
              echo $n $c
            done
            """)
        let v = r.stdoutText.split(whereSeparator: { $0 == "\n" || $0 == " " }).compactMap { Int($0) }
        return v.count == 3 ? (v[0], v[1], v[2]) : (0, 0, 0)
    }

    @Test("a bad option, a wrong key, a missing store, an unknown root: one line, non-zero, nothing mounted", arguments: StoreKind.allCases)
    func mountErrors(_ kind: StoreKind) throws {
        let fx = BigFixture.shared(kind)
        let mnt = fx.dir.sub("m-errors")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let bin = Repo.binary("cce4fs")
        let wrongKey = fx.dir.sub("wrong.key")
        _ = try run(Repo.binary("cce4"), ["key", "generate", "--insecure-key-file", wrongKey])
        let o = { (s: String) in ([s] + fx.storeOptions).joined(separator: ",") }
        let cases: [(args: [String], status: Int32, says: String)] = [
            ([fx.store, mnt, "-o", o("dataset=big,root=\(fx.root),insecure_key_file=\(fx.key),bogus=1")], 64, "unknown option 'bogus'"),
            ([fx.store, mnt, "-o", o("dataset=big,root=xyz,insecure_key_file=\(fx.key)")], 64, "root= must be"),
            ([fx.store, mnt, "-o", o("dataset=big,root=\(fx.root)")], 64, "insecure_key_file= are required"),
            ([fx.store, mnt, "-o", o("dataset=big,root=\(fx.root),insecure_key_file=\(wrongKey)")], 65, "wrong key"),
            ([fx.missingStore, mnt, "-o", o("dataset=big,root=\(fx.root),insecure_key_file=\(fx.key)")], 66, "does not exist"),
            ([fx.store, mnt, "-o", o("dataset=big,root=\(String(repeating: "ab", count: 32)),insecure_key_file=\(fx.key)")], 66, "not found"),
            ([fx.store, fx.dir.sub("no-such-dir"), "-o", o("dataset=big,root=\(fx.root),insecure_key_file=\(fx.key)")], 66, "mkdir -p"),
        ]
        for c in cases {
            let r = try run(bin, c.args)
            #expect(r.status == c.status, "\(c.says): status \(r.status): \(r.stderr)")
            #expect(r.stderr.contains(c.says), "\(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1, "one line: \(r.stderr)")
            #expect(!(try String(contentsOfFile: "/proc/mounts", encoding: .utf8)).contains(mnt + " "))
        }
        let help = try run(bin, ["--help"])
        #expect(help.status == 0 && help.stdoutText.contains("insecure_key_file=PATH"))
    }

    /// Whether the /dev/fuse descriptor of the cce4fs serving `mountpoint` is O_NONBLOCK
    /// (from /proc/PID/fdinfo); nil if no such process or descriptor was found.
    static func fuseDeviceNonBlocking(_ mountpoint: String) throws -> Bool? {
        let r = try shell("""
            for p in $(pgrep -f -- ' \(mountpoint) '); do
              for fd in /proc/$p/fd/*; do
                [ "$(readlink "$fd")" = /dev/fuse ] && awk '/^flags:/ {print $2}' "/proc/$p/fdinfo/${fd##*/}"
              done
            done
            """)
        guard let octal = r.stdoutText.split(separator: "\n").first, let flags = Int(octal, radix: 8) else { return nil }
        return flags & Int(O_NONBLOCK) != 0
    }

    @Test("segment fill: a 4 KiB read puts the other whole pages of its segment into the page cache, with the source's bytes; segment_fill=0 does not",
          arguments: StoreKind.allCases)
    func segmentFill(_ kind: StoreKind) throws {
        let fx = BigFixture.shared(kind)
        let f = "large/genome.bin"
        for fill in [true, false] {
            let m = try fx.mount(fill ? "m-fill" : "m-nofill", extra: fill ? [] : ["segment_fill=0"])
            defer { m.unmount() }
            let fd = open(m.path + "/" + f, O_RDONLY)
            try #require(fd >= 0)
            defer { close(fd) }
            // The kernel reads just the requested page of a random read.
            _ = posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM)
            // Segment 1 holds plaintext 16,328..<32,696: whole pages 4, 5 and 6. Read page 5.
            #expect(residentPages(fd, pages: 9) == Array(repeating: false, count: 9))
            var page = [UInt8](repeating: 0, count: 4096)
            #expect(page.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 4096, 5 * 4096) } == 4096)
            // The filler works in the background: give it a moment.
            var pages = residentPages(fd, pages: 9)
            for _ in 0..<100 where fill && !(pages[4] && pages[6]) {
                usleep(20_000)
                pages = residentPages(fd, pages: 9)
            }
            let expected = fill ? [false, false, false, false, true, true, true, false, false]
                                : [false, false, false, false, false, true, false, false, false]
            #expect(pages == expected, "\(fill ? "fill" : "no fill"): resident pages \(pages)")
            // What the filled pages hold is the source's bytes (read from the page cache now).
            let (a, _) = preadAll(fx.src + "/" + f, 4 * 4096, 3 * 4096), (b, e) = preadAll(m.path + "/" + f, 4 * 4096, 3 * 4096)
            #expect(e == 0 && bytesEqual(a, b))
            // A read at the end of the file fills the file's last partial page too.
            let size = (try FileManager.default.attributesOfItem(atPath: fx.src + "/" + f)[.size] as! NSNumber).intValue
            let lastPage = (size - 1) / 4096 * 4096
            let (c, _) = preadAll(fx.src + "/" + f, lastPage - 3 * 4096, size - lastPage + 3 * 4096)
            let (d, e2) = preadAll(m.path + "/" + f, lastPage - 3 * 4096, 4096)
            #expect(e2 == 0 && bytesEqual(Array(c.prefix(4096)), d))
            usleep(200_000)
            let (t, e3) = preadAll(m.path + "/" + f, lastPage - 3 * 4096, size - lastPage + 3 * 4096)
            #expect(e3 == 0 && bytesEqual(c, t))
        }
    }

    @Test("open fill: opening a small file puts all of it into the page cache before open returns, with the source's bytes; larger files and open_fill=0 do not",
          arguments: StoreKind.allCases)
    func openFill(_ kind: StoreKind) throws {
        let fx = BigFixture.shared(kind)
        for fill in [true, false] {
            let m = try fx.mount(fill ? "m-ofill" : "m-noofill", extra: fill ? [] : ["open_fill=0"])
            defer { m.unmount() }
            // 32,696 bytes: 7 whole pages and a partial last one.
            let f = "sizes/two-seg.bin"
            let fd = open(m.path + "/" + f, O_RDONLY)
            try #require(fd >= 0)
            defer { close(fd) }
            let pages = residentPages(fd, pages: 8)
            #expect(pages == Array(repeating: fill, count: 8), "\(fill ? "fill" : "no fill"): resident pages \(pages)")
            let (a, _) = preadAll(fx.src + "/" + f, 0, 40_000), (b, e) = preadAll(m.path + "/" + f, 0, 40_000)
            #expect(e == 0 && a.count == 32_696 && bytesEqual(a, b))
            // Above the limit (128K by default): nothing before the first read.
            let big = open(m.path + "/sizes/many.bin", O_RDONLY)
            try #require(big >= 0)
            defer { close(big) }
            #expect(residentPages(big, pages: 32) == Array(repeating: false, count: 32))
            // Concurrent opens of files being filled (an OPEN waits for a fill of its inode):
            // 4 readers per file at once, each gets the source's bytes.
            let cohort = fx.tree.files.filter { $0.hasPrefix("cohort/") }.prefix(200)
            let r = try run(Repo.python, ["-c", """
                import os, sys
                from concurrent.futures import ThreadPoolExecutor
                src, mnt, names = sys.argv[1], sys.argv[2], sys.argv[3:]
                def same(n):
                    return open(os.path.join(src, n), "rb").read() == open(os.path.join(mnt, n), "rb").read()
                with ThreadPoolExecutor(8) as ex:
                    ok = list(ex.map(same, [n for n in names for _ in range(4)]))
                print(sum(ok), len(ok))
                """, fx.src, m.path] + cohort)
            #expect(r.status == 0 && r.stdoutText == "800 800\n", "\(r.stdoutText) \(r.stderr)")
        }
        // The option is checked.
        let bad = try run(Repo.binary("cce4fs"), [fx.store, fx.dir.sub("m-ofill"), "-o", "dataset=big,root=\(fx.root),insecure_key_file=\(fx.key),open_fill=2M"])
        #expect(bad.status == 64 && bad.stderr.contains("open_fill must be a size of at most 1M"), "\(bad.stderr)")
        let badSpin = try run(Repo.binary("cce4fs"), [fx.store, fx.dir.sub("m-ofill"), "-o", "dataset=big,root=\(fx.root),insecure_key_file=\(fx.key),spin=20000"])
        #expect(badSpin.status == 64 && badSpin.stderr.contains("spin must be 0...10000"), "\(badSpin.stderr)")
    }

    @Test("directory prefetch: the 8th distinct file opened in a directory brings its other small files' objects into the store's page cache, not larger ones; 7 opens or prefetch=0 do not; reads stay exact")
    func directoryPrefetch() throws {
        let dir = TempDir("cce4-prefetch")
        var rng = SeededGenerator(seed: 88)
        var src = [String: [UInt8]]()
        // 40 files of 20,000-23,900 bytes (objects of 20-25 KB), and one of 3 MiB (above the
        // 1 MiB limit).
        for i in 0..<40 { src[String(format: "scan/f%02d.bin", i)] = rng.bytes(20_000 + 100 * i) }
        src["scan/big.bin"] = rng.bytes(3 << 20)
        for (p, b) in src { try writeFile(dir.sub("src/" + p), b) }
        let store = dir.sub("store")
        let root = try packWithCLI(source: dir.sub("src"), store: "file://" + store, dataset: "pf", keyFile: dir.sub("k"))
        // The store's objects: the files' by their size (directory objects are a few KB).
        var small = [String](), large = [String]()
        let walker = FileManager.default.enumerator(atPath: store)!
        while let rel = walker.nextObject() as? String {
            guard !rel.hasPrefix(".cce4-"), let size = (try? FileManager.default.attributesOfItem(atPath: store + "/" + rel))?[.size] as? NSNumber,
                  (try? FileManager.default.attributesOfItem(atPath: store + "/" + rel))?[.type] as? FileAttributeType == .typeRegular else { continue }
            if (20_000...25_000).contains(size.intValue) { small.append(store + "/" + rel) } else if size.intValue > 3 << 20 { large.append(store + "/" + rel) }
        }
        try #require(small.count == 40 && large.count == 1, "\(small.count) small and \(large.count) large objects")
        func resident(_ path: String, pages: Int) -> Int {
            let fd = open(path, O_RDONLY)
            defer { close(fd) }
            return residentPages(fd, pages: pages).filter { $0 }.count
        }
        /// Small objects resident whole.
        func residentSmall() -> Int { small.filter { resident($0, pages: 5) == 5 }.count }
        let names = src.keys.filter { $0 != "scan/big.bin" }.sorted()
        for (extra, opens, expectAll) in [([String](), 8, true), ([], 7, false), (["prefetch=0"], 8, false)] {
            for o in small + large { dropPageCache(o) }
            try #require(residentSmall() == 0, "the page cache of \(store) cannot be dropped (tmpfs?)")
            let m = try TestMount(store: "file://" + store, mountpoint: dir.sub("m"), dataset: "pf", root: root, keyFile: dir.sub("k"), extra: extra)
            defer { m.unmount() }
            // Open and read `opens` distinct files, one of them twice (counted once).
            for n in [names[0]] + names.prefix(opens) {
                let (b, e) = preadAll(m.path + "/" + n, 0, 30_000)
                #expect(e == 0 && bytesEqual(b, src[n]!))
            }
            let label = "\(extra) after \(opens) opens"
            if expectAll {
                #expect(eventually { residentSmall() == 40 }, "\(label): \(residentSmall()) of 40 small objects resident")
            } else {
                usleep(500_000)
                #expect(residentSmall() == opens, "\(label): \(residentSmall()) small objects resident, expected only the \(opens) opened")
            }
            #expect(resident(large[0], pages: 64) == 0, "\(label): the 3 MiB file's object was prefetched")
            // Every file reads back exactly afterwards.
            for n in names + ["scan/big.bin"] {
                let (b, e) = preadAll(m.path + "/" + n, 0, 4 << 20)
                #expect(e == 0 && bytesEqual(b, src[n]!), "\(label): \(n)")
            }
        }
        // The option is checked.
        let bad = try run(Repo.binary("cce4fs"), ["file://" + store, dir.sub("m"), "-o", "dataset=pf,root=\(root),insecure_key_file=\(dir.sub("k")),prefetch=lots"])
        #expect(bad.status == 64 && bad.stderr.contains("prefetch must be a size"), "\(bad.stderr)")
    }

    @Test("a 100,000-file directory lists completely (ls -f)", arguments: StoreKind.allCases)
    func hugeDirectory(_ kind: StoreKind) throws {
        // Source and file:// store on tmpfs: 100,000 object writes with fsync stay fast.
        let disk = try Tmpfs(size: "2g")
        let tmp = disk.path
        let make = try shell("mkdir -p '\(tmp)/src/big' && cd '\(tmp)/src/big' && seq -f 'participant_%06g.json' 0 99999 | xargs touch")
        try #require(make.status == 0, "\(make.stderr)")
        let server = kind == .s3 ? S3TestServer.shared : nil
        let store = server?.freshURL("huge") ?? "file://" + tmp + "/store"
        let root = try packWithCLI(source: tmp + "/src", store: store, dataset: "huge", keyFile: tmp + "/k",
                                   extra: (server?.cliOptions ?? []) + (kind == .s3 ? ["--jobs", "16"] : []))
        let m = try TestMount(store: store, mountpoint: tmp + "/mnt", dataset: "huge", root: root, keyFile: tmp + "/k",
                              extra: server?.mountOptions ?? [])
        defer { m.unmount() }
        let ls = try shell("ls -f '\(m.path)/big' | wc -l")
        #expect(ls.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "100002")
        let one = try shell("stat -c %s '\(m.path)/big/participant_054321.json'")
        #expect(one.stdoutText == "0\n")
    }
}

/// Raw access to a store's objects, the way an attacker with write access to the bucket or
/// directory has it: list, get and put bytes under the store root, for file:// (the files) and
/// s3:// (boto3 against the test server, outside cce4's code).
struct RawStore {
    let kind: StoreKind
    let url: String
    let dir: TempDir

    /// The store root: a directory (file://), or the key prefix in the test bucket (s3://).
    var root: String { kind == .file ? String(url.dropFirst(7)) : String(url.dropFirst(("s3://" + S3TestServer.bucket + "/").count)) }

    /// list, get or put through boto3, configured by the server's AWS_* variables.
    private func s3(_ op: String, _ key: String = "", _ file: String = "") throws -> String {
        let script = """
        import boto3, sys
        op, bucket, prefix, key, path = sys.argv[1:6]
        c = boto3.client("s3")
        if op == "list":
            for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/" + key):
                for o in page.get("Contents", []):
                    print(o["Key"][len(prefix) + 1:])
        elif op == "get":
            open(path, "wb").write(c.get_object(Bucket=bucket, Key=prefix + "/" + key)["Body"].read())
        else:
            c.put_object(Bucket=bucket, Key=prefix + "/" + key, Body=open(path, "rb").read())
        """
        let r = try run(Repo.python, ["-c", script, op, S3TestServer.bucket, root, key, file], environment: S3TestServer.shared.environment())
        guard r.status == 0 else { throw TestFailure("s3 \(op) \(key): \(r.stderr)") }
        return r.stdoutText
    }

    /// Keys (relative to the root) of the objects under `prefix`.
    func list(_ prefix: String) throws -> [String] {
        switch kind {
        case .file:
            return try FileManager.default.subpathsOfDirectory(atPath: root + "/" + prefix).map { prefix + $0 }
        case .s3:
            return try s3("list", prefix).split(separator: "\n").map(String.init)
        }
    }

    func get(_ key: String) throws -> [UInt8] {
        switch kind {
        case .file: return try readFile(root + "/" + key)
        case .s3:
            let f = dir.sub("raw-get")
            _ = try s3("get", key, f)
            return try readFile(f)
        }
    }

    func put(_ key: String, _ bytes: [UInt8]) throws {
        switch kind {
        case .file: try writeFile(root + "/" + key, bytes)
        case .s3:
            let f = dir.sub("raw-put")
            try writeFile(f, bytes)
            _ = try s3("put", key, f)
        }
    }
}

@Suite("cce4fs under tampering", .serialized)
struct MountTamperTests {
    @Test("flipped bytes, swapped, truncated and rolled-back objects give EIO, never wrong bytes", arguments: StoreKind.allCases)
    func tampering(_ kind: StoreKind) throws {
        let dir = TempDir("cce4-tamper")
        let src = dir.sub("src"), key = dir.sub("k")
        let url = kind == .file ? "file://" + dir.sub("store") : S3TestServer.shared.freshURL("tamper")
        let cliOptions = kind == .file ? [] : S3TestServer.shared.cliOptions
        let raw = RawStore(kind: kind, url: url, dir: dir)
        var rng = SeededGenerator(seed: 3)
        for name in ["flip", "swap-a", "swap-b", "trunc", "rollback", "intact"] {
            try writeFile("\(src)/files/\(name).bin", rng.bytes(100_000))
        }
        try writeFile("\(src)/tamperdir/inside.txt", Array("inside".utf8))
        let root1 = try packWithCLI(source: src, store: url, dataset: "t", keyFile: key, extra: cliOptions)
        // Object keys are opaque by design; the test finds which object holds which path the
        // way an operator would: damage one object and ask verify --show-names what broke.
        func objects() throws -> Set<String> {
            Set(try raw.list("t/objects/").filter { $0.split(separator: "/").last?.count == 64 })
        }
        let v1Objects = try objects()
        try writeFile("\(src)/files/rollback.bin", rng.bytes(100_000))
        let root2 = try packWithCLI(source: src, store: url, dataset: "t", keyFile: key, extra: cliOptions)
        func pathOf(object: String, root: String) throws -> String {
            var b = try raw.get(object); let original = b
            b[b.count - 1] ^= 1; try raw.put(object, b)
            defer { try? raw.put(object, original) }
            let r = try run(Repo.binary("cce4"), ["dataset", "verify", "--store", url, "--dataset", "t", "--root", root, "--insecure-key-file", key, "--show-names"] + cliOptions)
            let line = r.stdoutText.split(separator: "\n").first { $0.hasPrefix("BAD") } ?? ""
            guard let open = line.lastIndex(of: "["), let close = line.lastIndex(of: "]") else { return "" }
            return String(line[line.index(after: open)..<close])
        }
        var objectFor = [String: String]()
        for o in try objects() {
            let p = try pathOf(object: o, root: root2)
            if !p.isEmpty { objectFor[p] = o }
        }
        let rollbackV1 = try v1Objects.compactMap { o -> String? in
            try pathOf(object: o, root: root1) == "/files/rollback.bin" ? o : nil
        }.first
        guard let fFlip = objectFor["/files/flip.bin"], let fA = objectFor["/files/swap-a.bin"], let fB = objectFor["/files/swap-b.bin"],
              let fTrunc = objectFor["/files/trunc.bin"], let fRoll = objectFor["/files/rollback.bin"], let v1Roll = rollbackV1,
              let dirObj = objectFor["/tamperdir"] else {
            Issue.record("could not map objects: \(objectFor.keys.sorted())"); return
        }
        var b = try raw.get(fFlip); b[50_000] ^= 0x10; try raw.put(fFlip, b)
        let a = try raw.get(fA), bb = try raw.get(fB); try raw.put(fA, bb); try raw.put(fB, a)
        let t = try raw.get(fTrunc); try raw.put(fTrunc, Array(t[0..<16384]))
        try raw.put(fRoll, try raw.get(v1Roll))
        var d = try raw.get(dirObj); d[d.count / 2] ^= 1; try raw.put(dirObj, d)

        let m = try TestMount(store: url, mountpoint: dir.sub("mnt"), dataset: "t", root: root2, keyFile: key,
                              extra: kind == .file ? [] : S3TestServer.shared.mountOptions)
        defer { m.unmount() }
        let expected = try readFile("\(src)/files/intact.bin")
        #expect(try readFile(m.path + "/files/intact.bin") == expected, "untouched files still read")
        for name in ["flip", "swap-a", "swap-b", "trunc", "rollback"] {
            let (bytes, e) = preadAll(m.path + "/files/\(name).bin", 0, 100_000)
            #expect(e == EIO, "\(name): errno \(e), got \(bytes.count) bytes")
        }
        // The flipped file: the segments before the damage read; the damaged one is EIO.
        #expect(preadAll(m.path + "/files/flip.bin", 0, 1000).1 == 0)
        #expect(preadAll(m.path + "/files/flip.bin", 49_000, 2000).1 == EIO)
        // The tampered directory: lookups in it fail with EIO.
        var st = stat()
        #expect(stat(m.path + "/tamperdir/inside.txt", &st) == -1 && errno == EIO)
    }
}

@Suite("cce4fs over s3://", .serialized)
struct S3MountTests {
    @Test("wrong S3 credentials: pack and mount are refused with a clear one-line message, nothing mounted")
    func wrongCredentials() throws {
        let fx = BigFixture.s3
        let server = S3TestServer.shared
        let dir = TempDir("cce4-s3-creds")
        let creds = dir.sub("credentials")
        try writeFile(creds, Array("[default]\naws_access_key_id = \(server.accessKey)\naws_secret_access_key = wrong-secret-0123456789\n".utf8))
        let mnt = dir.sub("mnt")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let m = try run(Repo.binary("cce4fs"), [fx.store, mnt, "-o", "dataset=big,root=\(fx.root),insecure_key_file=\(fx.key),s3_endpoint=\(server.endpoint),s3_credentials_file=\(creds)"])
        #expect(m.status == 77, "\(m.status): \(m.stderr)")
        #expect(m.stderr.contains("refused the credentials") && m.stderr.contains("SignatureDoesNotMatch"), "\(m.stderr)")
        #expect(m.stderr.split(separator: "\n").count == 1 && !m.stderr.contains("wrong-secret"), "\(m.stderr)")
        #expect(!(try String(contentsOfFile: "/proc/mounts", encoding: .utf8)).contains(mnt + " "))
        // The same through the AWS_* variables, for the packer.
        try writeFile(dir.sub("src/a.txt"), [1, 2, 3])
        _ = try run(Repo.binary("cce4"), ["key", "generate", "--insecure-key-file", dir.sub("k")])
        let p = try run(Repo.binary("cce4"), ["dataset", "pack", dir.sub("src"), "--store", server.freshURL("creds"), "--dataset", "d", "--insecure-key-file", dir.sub("k")],
                        environment: server.environment(secret: "wrong-secret-0123456789"))
        #expect(p.status == 77 && p.stderr.contains("refused the credentials") && !p.stderr.contains("wrong-secret"), "\(p.status): \(p.stderr)")
    }

    @Test("the on-disk block cache holds only ciphertext (no known plaintext in it) and respects its size limit")
    func diskCacheHoldsCiphertextOnly() throws {
        let server = S3TestServer.shared
        let dir = TempDir("cce4-s3-disk")
        let marker = Array("LONGEVITY-PLAINTEXT-MARKER-7f3a:".utf8)
        var text = [UInt8]()
        while text.count < 3 << 20 { text += marker + Array(String(text.count).utf8) + [0x0a] }
        try writeFile(dir.sub("src/notes/plain.txt"), text)
        try writeFile(dir.sub("src/notes/random.bin"), try randomBytes(12 << 20))
        let store = server.freshURL("disk")
        let root = try packWithCLI(source: dir.sub("src"), store: store, dataset: "d", keyFile: dir.sub("k"), extra: server.cliOptions + ["--part-size", String(4 << 20)])
        let limit = 8 << 20
        let m = try TestMount(store: store, mountpoint: dir.sub("mnt"), dataset: "d", root: root, keyFile: dir.sub("k"),
                              extra: server.mountOptions + ["s3_disk_cache=\(dir.sub("cache"))", "s3_disk_cache_size=8M"])
        defer { m.unmount() }
        for f in ["notes/plain.txt", "notes/random.bin"] {
            #expect(bytesEqual(try readFile(m.path + "/" + f), try readFile(dir.sub("src/" + f))), "\(f)")
        }
        m.unmount()
        func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
            Data(hay).range(of: Data(needle)) != nil
        }
        #expect(contains(text, marker), "the scan finds the marker in plaintext")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.sub("cache"))
        var total = 0
        for n in names {
            let bytes = try readFile(dir.sub("cache/" + n))
            total += bytes.count
            #expect(!contains(bytes, marker), "plaintext in the disk cache: \(n)")
            #expect(!contains(bytes, Array("PLAINTEXT-MARKER".utf8)))
        }
        #expect(names.count >= 4, "the cache was used: \(names.count) files")
        #expect(total <= limit, "\(total) bytes on disk, limit \(limit)")
    }
}

/// A 200 MiB file packed in 4 MiB parts on the test server, read through a fault-injecting
/// proxy (built once).
final class FaultFixture: @unchecked Sendable {
    static let shared: FaultFixture = try! FaultFixture()
    let dir = TempDir("cce4-faults")
    let store: String
    let root: String
    let sha256: String
    var key: String { dir.sub("k") }

    init() throws {
        let server = S3TestServer.shared
        try writeFile(dir.sub("src/data/big.bin"), try randomBytes(200 << 20))
        try writeFile(dir.sub("src/data/small.txt"), Array("small and cached\n".utf8))
        sha256 = String(try shell("sha256sum < '\(dir.sub("src/data/big.bin"))'").stdoutText.prefix(64))
        store = server.freshURL("faults")
        root = try packWithCLI(source: dir.sub("src"), store: store, dataset: "f", keyFile: dir.sub("k"),
                               extra: server.cliOptions + ["--part-size", String(4 << 20)])
        try FileManager.default.removeItem(atPath: dir.sub("src/data/big.bin"))
    }

    /// Mounts through `proxy` with short timeouts and enough retries for a 30 % fault rate.
    func mount(_ name: String, through proxy: FaultProxy, options: [String]) throws -> TestMount {
        try TestMount(store: store, mountpoint: dir.sub(name), dataset: "f", root: root, keyFile: key,
                      extra: ["s3_endpoint=\(proxy.endpoint)", "s3_credentials_file=\(S3TestServer.shared.credentialsFile)"] + options)
    }
}

@Suite("cce4fs over a faulty network (fault-injecting proxy)", .serialized)
struct S3FaultTests {
    @Test("a full read of a 200 MiB file returns the exact bytes while the proxy injects each fault class",
          arguments: [("reset", 0.2), ("500", 0.2), ("503", 0.2), ("stall", 0.1), ("truncate", 0.2)])
    func faults(_ fault: String, _ rate: Double) throws {
        let fx = FaultFixture.shared
        let proxy = try FaultProxy(upstream: S3TestServer.shared.endpoint, fault: fault, rate: rate, stallSeconds: 3, seed: 42)
        let m = try fx.mount("m-\(fault)", through: proxy, options: ["s3_retries=12", "s3_stall_timeout=1", "s3_connect_timeout=2"])
        defer { m.unmount() }
        let sum = try shell("sha256sum < '\(m.path)/data/big.bin'")
        #expect(sum.status == 0, "\(sum.stderr)")
        #expect(String(sum.stdoutText.prefix(64)) == fx.sha256, "\(fault): the bytes differ")
        m.unmount()
        let counts = proxy.stop()
        #expect(counts.faults > 0 && counts.requests > 40, "\(fault): \(counts.faults) faults in \(counts.requests) requests")
        let share = Double(counts.faults) / Double(max(1, counts.requests))
        #expect(share >= rate / 2 && share <= rate * 2, "\(fault): injected \(counts.faults) of \(counts.requests)")
    }

    @Test("a slow server: while one read waits 0.5 s for its GET, lookups answered from memory take milliseconds (the request loop's watchdog takes the lead from the blocked handler), and the read completes whole")
    func slowServer() throws {
        let fx = FaultFixture.shared
        let proxy = try FaultProxy(upstream: S3TestServer.shared.endpoint, fault: "delay", rate: 1, stallSeconds: 0.5)
        let m = try fx.mount("m-slow", through: proxy, options: ["s3_stall_timeout=5"])
        defer { m.unmount() }
        #expect(try shell("ls '\(m.path)/data'").stdoutText == "big.bin\nsmall.txt\n")
        let path = m.path + "/data/big.bin"
        func missing(_ i: Int) -> Double {
            // A name that is not there: a LOOKUP the kernel has not cached, answered from the
            // listing in memory.
            let t = Date()
            var st = stat()
            #expect(stat(m.path + "/data/absent-\(i)", &st) != 0 && errno == ENOENT)
            return Date().timeIntervalSince(t)
        }
        for round in 0..<3 {
            // A read of a part not yet fetched: its GET waits 0.5 s at the proxy.
            let offset = (round * 40 + 60) << 20
            let done = DispatchSemaphore(value: 0)
            let result = Mutex<(bytes: [UInt8], errno: Int32)>(([], 0))
            Thread {
                let (b, e) = preadAll(path, offset, 4096)
                result.withLock { $0 = (b, e) }
                done.signal()
            }.start()
            usleep(100_000)
            let took = missing(round)
            #expect(took < 0.25, "round \(round): a lookup took \(took) s behind a blocked read")
            #expect(done.wait(timeout: .now() + 30) == .success)
            let (b, e) = result.withLock { $0 }
            #expect(e == 0 && b.count == 4096, "round \(round): errno \(e)")
        }
        m.unmount()
        proxy.stop()
    }

    @Test("server gone: reads fail with EIO within the configured retry time; the mount stays up and cached directories list")
    func serverGone() throws {
        let fx = FaultFixture.shared
        let proxy = try FaultProxy(upstream: S3TestServer.shared.endpoint, fault: "none", rate: 0)
        let m = try fx.mount("m-gone", through: proxy, options: ["s3_retries=5", "s3_retry_time=3", "s3_connect_timeout=1"])
        defer { m.unmount() }
        #expect(try shell("ls '\(m.path)/data'").stdoutText == "big.bin\nsmall.txt\n")
        #expect(try readFile(m.path + "/data/small.txt") == Array("small and cached\n".utf8))
        proxy.stop()
        let start = Date()
        let (_, e) = preadAll(m.path + "/data/big.bin", 150 << 20, 4096)
        let took = Date().timeIntervalSince(start)
        #expect(e == EIO, "errno \(e)")
        #expect(took < 3 + 5, "EIO after \(took) s")
        // The mount is still up and answers from its caches.
        #expect(try shell("ls '\(m.path)/data'").stdoutText == "big.bin\nsmall.txt\n")
        var st = stat()
        #expect(stat(m.path + "/data/big.bin", &st) == 0 && st.st_size == 200 << 20)
        #expect((try String(contentsOfFile: "/proc/mounts", encoding: .utf8)).contains(m.path + " "))
    }
}
