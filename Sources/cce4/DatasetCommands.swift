import ArgumentParser
import Dataset
import Envelope
import Foundation
import Logging
import ObjectStore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

struct DatasetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataset",
        abstract: "Pack a directory into an encrypted dataset, and read or verify one without FUSE.",
        subcommands: [Pack.self, List.self, Cat.self, Verify.self, Versions.self, Push.self])
}

/// Options every dataset reader takes.
struct ReadOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The store URL, as in file:///srv/cce4-store or s3://bucket/prefix.", valueName: "url"))
    var store: String

    @OptionGroup var s3: S3Flags

    @Option(help: ArgumentHelp("The dataset id.", valueName: "id"))
    var dataset: String

    @Option(help: ArgumentHelp("The dataset version: its 64-hex-digit root hash, as 'pack' printed it (and the ledger records it).", valueName: "hash"))
    var root: String

    @Option(name: .customLong("insecure-key-file"), help: ArgumentHelp("The dataset key file (development only; see 'cce4 key generate').", valueName: "path"))
    var keyFile: String

    @Option(help: ArgumentHelp("Log level on standard error.", valueName: "level"))
    var logLevel: Logger.Level = .warning

    func validate() throws {
        guard (try? SHA256Digest(hex: root)) != nil else { throw ValidationError("--root must be 64 hex digits (the root hash 'cce4 dataset pack' printed)") }
    }

    func open() throws -> DatasetReader {
        bootstrapLogging(logLevel)
        let key = try KeyFiles.load(keyFile)
        let s = try ObjectStores.open(url: store, s3: s3.options)
        let reader = try DatasetReader(store: s, datasetID: dataset, root: SHA256Digest(hex: root), key: key)
        Logger(label: "cce4.dataset").debug("opened dataset", metadata: ["store": "\(s.url)", "dataset": "\(dataset)", "root": "\(root)"])
        return reader
    }
}

/// Progress on a terminal: one line, redrawn at most ten times a second.
final class ProgressLine: Sendable {
    let enabled: Bool
    private let last = Mutex<Double>(0)
    private let start = Date()
    init(enabled: Bool) { self.enabled = enabled && isatty(2) == 1 }

    func update(_ text: @autoclosure () -> String, force: Bool = false) {
        guard enabled else { return }
        let now = Date().timeIntervalSince1970
        let due = last.withLock { l -> Bool in
            if force || now - l >= 0.1 { l = now; return true }
            return false
        }
        if due { FileHandle.standardError.write(Data(("\r\u{1b}[K" + text()).utf8)) }
    }

    func finish(_ text: String) {
        guard enabled else { return }
        FileHandle.standardError.write(Data(("\r\u{1b}[K" + text + "\n").utf8))
    }

    var elapsed: Double { Date().timeIntervalSince(start) }
}

func formatBytes(_ n: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n), i = 0
    while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
    return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
}

extension DatasetCommand {
    struct Pack: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Encrypt a directory tree into a store; print the new version's root hash.",
            discussion: """
            Every regular file becomes one streaming-AEAD object (or several parts), every \
            directory one encrypted, authenticated directory object; the root hash names the \
            version. Object keys are random or hashes: the store learns no names. Symlinks are \
            stored as links; FIFOs, sockets and devices are refused. The root hash goes to \
            standard output; progress goes to standard error on a terminal.
            """)

        @Argument(help: ArgumentHelp("The directory to pack (with --tar: a tar archive, '-' for standard input).", valueName: "src-dir"))
        var source: String

        @Flag(help: "SRC-DIR is a tar archive (POSIX ustar/pax, GNU; docs/tar.md), read in one pass and never unpacked: `tar -C DIR -c . | cce4 dataset pack --tar - …`.")
        var tar = false

        @Option(help: ArgumentHelp("The store URL: file://DIR (created if missing) or s3://BUCKET/PREFIX (the bucket must exist).", valueName: "url"))
        var store: String

        @OptionGroup var s3: S3Flags

        @Option(help: ArgumentHelp("The dataset id (a-z, 0-9, '.', '-', '_').", valueName: "id"))
        var dataset: String

        @Option(name: .customLong("insecure-key-file"), help: ArgumentHelp("The dataset key file (development only).", valueName: "path"))
        var keyFile: String

        @Option(help: ArgumentHelp("Ciphertext segment size in bytes.", valueName: "bytes"))
        var segmentSize: Int = StreamParameters.defaultSegmentSize

        @Option(help: ArgumentHelp("Store files whose ciphertext exceeds this many bytes as parts of this size (a multiple of the segment size).", valueName: "bytes"))
        var partSize: Int64?

        @Option(help: "Files encrypted in parallel.")
        var jobs: Int = max(1, min(4, ProcessInfo.processInfo.activeProcessorCount))

        @Flag(name: .shortAndLong, help: "No progress output, even on a terminal.")
        var quiet = false

        @Option(help: ArgumentHelp("Log level on standard error.", valueName: "level"))
        var logLevel: Logger.Level = .warning

        func validate() throws {
            guard jobs >= 1 && jobs <= 64 else { throw ValidationError("--jobs must be 1...64") }
            guard (try? StreamParameters(segmentSize: segmentSize)) != nil else {
                throw ValidationError("--segment-size must be \(StreamParameters.minimumSegmentSize)...\(StreamParameters.maximumSegmentSize)")
            }
            if let p = partSize, p <= 0 || p % Int64(segmentSize) != 0 {
                throw ValidationError("--part-size must be a positive multiple of --segment-size (\(segmentSize))")
            }
        }

        func run() throws {
            bootstrapLogging(logLevel)
            try guarded {
                var st = stat()
                guard tar || (stat(source, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR) else {
                    throw Failure(description: "\(source) is not a directory; pass the directory to pack", exitCode: Failure.noInput)
                }
                let key = try KeyFiles.load(keyFile)
                let s = try ObjectStores.open(url: store, create: true, s3: s3.options)
                var options = PackOptions()
                options.parameters = try StreamParameters(segmentSize: segmentSize)
                options.partSize = partSize
                options.concurrency = jobs
                let packer = try Packer(store: s, datasetID: dataset, key: key, options: options)
                let line = ProgressLine(enabled: !quiet)
                let progress: @Sendable (PackProgress) -> Void = { p in
                    let rate = Double(p.bytesDone) / max(line.elapsed, 0.001)
                    let pct = p.bytesTotal > 0 ? Double(p.bytesDone) * 100 / Double(p.bytesTotal) : 100
                    line.update(String(format: "packing: %3.0f%%  %d/%d files  %@ / %@  %@/s", pct, p.filesDone, p.filesTotal,
                                       formatBytes(p.bytesDone), formatBytes(p.bytesTotal), formatBytes(Int64(rate))))
                }
                let result: PackResult
                if tar {
                    let input: any ByteSource = source == "-" ? FileByteSource(fd: 0) : try FileByteSource(path: source)
                    result = try packer.pack(tar: input, progress: progress)
                } else {
                    result = try packer.pack(source: source, progress: progress)
                }
                line.finish("packed \(plural(result.files, "file")), \(plural(result.directories, "directory", "directories")), \(plural(result.symlinks, "symlink")): "
                            + "\(formatBytes(result.plaintextBytes)) plaintext, \(formatBytes(result.ciphertextBytes)) ciphertext in \(String(format: "%.1f", line.elapsed))s")
                print(result.root.hex)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List a directory of a packed dataset.")

        @Argument(help: ArgumentHelp("A path inside the dataset.", valueName: "path"))
        var path: String = "/"

        @OptionGroup var options: ReadOptions

        @Flag(name: .shortAndLong, help: "Long format: kind and mode, size, modification time, name.")
        var long = false

        @Flag(name: [.customShort("R"), .long], help: "List subdirectories recursively.")
        var recursive = false

        func run() throws {
            try guarded {
                let reader = try options.open()
                let listing: DirectoryListing, hash: SHA256Digest
                switch try reader.resolve(path) {
                case .root: (listing, hash) = (try reader.rootDirectory(), reader.root)
                case .entry(let e, _):
                    guard case .directory(let d) = e.target else {
                        printEntry(e, prefix: "")
                        return
                    }
                    (listing, hash) = (try reader.directory(d), d.hash)
                }
                let base = path.split(separator: "/").joined(separator: "/")
                try listDirectory(reader, listing, hash, prefix: base.isEmpty ? "" : base + "/")
            }
        }

        func listDirectory(_ reader: DatasetReader, _ listing: DirectoryListing, _ hash: SHA256Digest, prefix: String) throws {
            for i in 0..<listing.count {
                let e: DirectoryEntry
                do { e = try listing.entry(at: i) } catch { throw DatasetError.integrity(object: reader.objectKey(ofDirectory: hash), detail: "\(error)") }
                printEntry(e, prefix: recursive ? prefix : "")
                // Depth-first, like find(1): every printed path can be passed to 'cat'.
                if recursive, case .directory(let d) = e.target {
                    try listDirectory(reader, try reader.directory(d), d.hash, prefix: prefix + String(decoding: e.name, as: UTF8.self) + "/")
                }
            }
        }

        func printEntry(_ e: DirectoryEntry, prefix: String) {
            let name = prefix + String(decoding: e.name, as: UTF8.self)
            guard long else { print(name + (e.kind == .directory ? "/" : "")); return }
            let kind: Character = e.kind == .directory ? "d" : (e.kind == .symlink ? "l" : "-")
            var perms = ""
            for (i, c) in "rwxrwxrwx".enumerated() { perms.append(e.mode & UInt16(0o400 >> i) != 0 ? c : "-") }
            let date = Date(timeIntervalSince1970: Double(e.mtimeSeconds))
            let f = DateFormatter(); f.dateFormat = "yyyy-MM-dd HH:mm"; f.timeZone = TimeZone(identifier: "UTC")
            var line = "\(kind)\(perms) \(String(e.size).leftPad(12)) \(f.string(from: date)) \(name)"
            if case .symlink(let t) = e.target { line += " -> " + String(decoding: t, as: UTF8.self) }
            print(line)
        }
    }

    struct Cat: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a file of a packed dataset (or a byte range of it) to standard output.")

        @Argument(help: ArgumentHelp("A file inside the dataset.", valueName: "path"))
        var path: String

        @OptionGroup var options: ReadOptions

        @Option(help: "First byte to write.")
        var offset: Int64 = 0

        @Option(help: "Number of bytes to write (default: to the end).")
        var length: Int64?

        func validate() throws {
            guard offset >= 0 else { throw ValidationError("--offset must be >= 0") }
            if let l = length, l < 0 { throw ValidationError("--length must be >= 0") }
        }

        func run() throws {
            try guarded {
                let reader = try options.open()
                guard case .entry(let e, _) = try reader.resolve(path) else { throw DatasetError.wrongKind("\(path) is a directory; use 'cce4 dataset ls'") }
                let f: FileRef
                switch e.target {
                case .file(let ref): f = ref
                case .directory: throw DatasetError.wrongKind("\(path) is a directory; use 'cce4 dataset ls'")
                case .symlink(let t): throw DatasetError.wrongKind("\(path) is a symbolic link to \(String(decoding: t, as: UTF8.self)); cat its target")
                }
                let file = try reader.open(f)
                let end = min(f.size, length.map { offset + $0 } ?? f.size)
                var pos = min(offset, end)
                let start = pos
                var buf = [UInt8](repeating: 0, count: 1 << 20)
                defer { secureWipe(&buf) }
                while pos < end {
                    let want = min(Int64(buf.count), end - pos)
                    let n: Int
                    do {
                        n = try buf.withUnsafeMutableBytes { try file.read(pos..<pos + want, into: $0) }
                    } catch {
                        let f = Failure.from(error)
                        let note = pos > start ? " The \(pos - start) bytes already written are authentic but INCOMPLETE: discard the output." : ""
                        throw Failure(description: f.description + note, exitCode: f.exitCode)
                    }
                    try buf.withUnsafeBytes { b in
                        var done = 0
                        while done < n {
                            let w = Glibc.write(1, b.baseAddress! + done, n - done)
                            if w < 0 {
                                if errno == EINTR { continue }
                                if errno == EPIPE { throw ExitCode(0) }
                                throw Failure(description: "cannot write to standard output: \(String(cString: strerror(errno)))", exitCode: Failure.ioError)
                            }
                            done += w
                        }
                    }
                    pos += Int64(n)
                }
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every object of a dataset version: hashes, tags, sizes, encodings.",
            discussion: """
            Walks the whole tree from the root hash, checks each directory object against the \
            hash its parent records, decrypts and validates its listing, and authenticates every \
            segment of every file. Prints one 'BAD <object key>: <reason>' line per bad object \
            (names only with --show-names) and exits 65 if any was found.
            """)

        @OptionGroup var options: ReadOptions

        @Flag(help: "Also print the dataset path of each bad object (decrypted names on your terminal).")
        var showNames = false

        @Flag(name: .shortAndLong, help: "No progress output.")
        var quiet = false

        func run() throws {
            try guarded {
                let reader = try options.open()
                let line = ProgressLine(enabled: !quiet)
                let report = Verifier(reader: reader, showNames: showNames).run { r in
                    line.update("verifying: \(r.directories) directories, \(r.files) files, \(formatBytes(r.plaintextBytes)), \(r.problems.count) problems")
                }
                line.finish("")
                for p in report.problems { print(p) }
                if report.directories == 0 && !report.problems.isEmpty {
                    print("hint: the root directory did not open: check the key file, --dataset and --root (a wrong key looks exactly like tampering)")
                }
                let summary = "\(plural(report.directories, "directory", "directories")), \(plural(report.files, "file")), \(plural(report.symlinks, "symlink")), \(formatBytes(report.plaintextBytes)) plaintext in \(formatBytes(report.ciphertextBytes)) of objects"
                if report.ok {
                    print("OK: \(summary)")
                } else {
                    print("FAILED: \(report.problems.count) bad object\(report.problems.count == 1 ? "" : "s"); checked \(summary)")
                    throw ExitCode(Failure.dataError)
                }
            }
        }
    }

    struct Versions: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the versions the store's markers name (unauthenticated: check roots against the ledger).")

        @Option(help: ArgumentHelp("The store URL.", valueName: "url"))
        var store: String

        @OptionGroup var s3: S3Flags

        @Option(help: ArgumentHelp("The dataset id.", valueName: "id"))
        var dataset: String

        func run() throws {
            try guarded {
                let s = try ObjectStores.open(url: store, s3: s3.options)
                let layout = try DatasetLayout(datasetID: dataset)
                for info in try s.listAll(prefix: layout.prefix + "versions/") {
                    let (bytes, _) = try s.get(info.key, range: 0..<max(0, min(info.size, 4096)))
                    let obj = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any]
                    let root = info.key.rawValue.split(separator: "/").last.map(String.init) ?? "?"
                    let created = obj?["created"] as? String ?? "?"
                    let files = obj?["files"] as? Int ?? -1
                    let bytesCount = (obj?["plaintext_bytes"] as? NSNumber)?.int64Value ?? -1
                    print("\(root)  \(created)  \(files) files  \(formatBytes(bytesCount))")
                }
            }
        }
    }
}

func plural(_ n: Int, _ one: String, _ many: String? = nil) -> String { "\(n) " + (n == 1 ? one : (many ?? one + "s")) }

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
