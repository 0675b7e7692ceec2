// The embedded engine: one append-only file of signed, hash-chained entries that is also
// an RFC 6962 Merkle tree. Appends are serialized by an exclusive flock(2) on the file and
// made durable with fsync before they count; readers take no lock (they read up to the
// last complete record). A torn last record (a crash mid-append) is dropped by the next
// writer, with a log line and the torn bytes kept beside the file. docs/ledger.md §3.
import Envelope
import Foundation
import Logging
import Wallet
#if canImport(Glibc)
import Glibc
#endif

public final class EmbeddedLedger {
    public static let magic = Array("CCE4LEDG".utf8)
    public static let headerSize = 36
    /// The file format version in the header (2: entries with operator approvals).
    public static let formatVersion: UInt16 = 2
    /// Bodies are a few hundred bytes; anything larger is corruption, not an entry.
    static let maxBody = 1024, minBody = 1 + 1 + 8 + 8 + 32 + 20 + 1 + 8 + 65

    public let path: String
    /// 16 random bytes chosen at `create`; the checkpoint origin names it.
    public let logID: [UInt8]
    public var origin: String { "cce4long.ledger/" + Hex.encode(logID) }
    public private(set) var state: LedgerState
    public private(set) var tree = MerkleTree()
    private let fd: Int32
    private let headerHash: [UInt8]
    private var lastLeaf: [UInt8]
    /// End of the last complete record.
    private var offset: Int
    /// Where each entry's record starts, so `entry(_:)` is one read.
    private var recordOffsets: [Int] = []
    private let logger: Logger

    /// How far past this machine's clock an entry may be dated, appended or read. Without a
    /// bound, one entry dated in the far future (anyone may sign an audit event) would force
    /// every later entry to that date and make every new rental "already expired".
    public static let maxClockSkew: UInt64 = 300
    static func now() -> UInt64 { UInt64(max(0, Date().timeIntervalSince1970)) }

    /// Set when a read found a bad entry: the state is then incomplete, so every query fails
    /// closed (no rentals, no events) and every read or append repeats the error.
    private var poisoned: LedgerError?
    public var isPoisoned: Bool { poisoned != nil }

    /// Number of entries read so far.
    public var count: UInt64 { tree.size }

    /// Makes a new, empty ledger file (refuses to overwrite one).
    @discardableResult
    public static func create(path: String) throws(LedgerError) -> EmbeddedLedger {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let e = errno
            throw .io(e == EEXIST ? "\(path) already exists; a ledger is never overwritten" : "cannot create \(path): \(String(cString: strerror(e)))")
        }
        var header = magic
        var w = Writer(); w.u16(formatVersion); w.u16(0)
        header += w.bytes
        do { header += try Random.bytes(16) } catch { Glibc.close(fd); throw .io("\(error)") }
        w = Writer(); w.u64(UInt64(Date().timeIntervalSince1970))
        header += w.bytes
        let ok = header.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == header.count && fsync(fd) == 0
        Glibc.close(fd)
        guard ok else { unlink(path); throw .io("cannot write \(path): \(String(cString: strerror(errno)))") }
        syncDirectory(of: path)
        return try EmbeddedLedger(path: path, writable: true)
    }

    /// Opens a ledger and reads (and checks) every complete entry.
    public init(path: String, writable: Bool = false, logger: Logger = Logger(label: "cce4.ledger")) throws(LedgerError) {
        self.path = path
        self.logger = logger
        let fd = Glibc.open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            throw .io(e == ENOENT ? "no ledger at \(path); make one with `cce4 ledger init`" : "cannot open \(path): \(String(cString: strerror(e)))")
        }
        self.fd = fd
        var header = [UInt8](repeating: 0, count: Self.headerSize)
        let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n == Self.headerSize, Array(header[0..<8]) == Self.magic else {
            Glibc.close(fd)
            throw .corrupt(entry: nil, offset: 0, "\(path) is not a cce4 ledger (bad magic or too short)")
        }
        let version = UInt16(header[8]) << 8 | UInt16(header[9])
        guard version == Self.formatVersion else {
            Glibc.close(fd)
            throw .corrupt(entry: nil, offset: 8, version < Self.formatVersion
                ? "\(path) has ledger format version \(version), from an earlier cce4 (before operator approvals); make a new ledger with `cce4 ledger init`"
                : "unknown ledger format version \(version); a newer cce4 wrote it")
        }
        logID = Array(header[12..<28])
        state = LedgerState(domain: .embeddedLedger(logID: logID))
        headerHash = SHA256Digest.hash(header).bytes
        lastLeaf = headerHash
        offset = Self.headerSize
        if writable {
            try withLock { () throws(LedgerError) in try readNew(dropTornTail: true) }
        } else {
            try readNew(dropTornTail: false)
        }
    }

    deinit { Glibc.close(fd) }

    /// Reads entries appended since the last read (by this or other processes).
    public func refresh() throws(LedgerError) { try readNew(dropTornTail: false) }

    /// Appends one operation signed by `signer` at `time` (default: now, never before the
    /// previous entry). Durable (fsync) when it returns.
    @discardableResult
    public func append(_ op: Operation, signer: PrivateKey, time: UInt64? = nil) throws(LedgerError) -> Entry {
        try withLock { () throws(LedgerError) -> Entry in
            try readNew(dropTornTail: true)
            let now = Self.now()
            let t = time ?? max(now, state.lastTime)
            guard t <= now + Self.maxClockSkew else {
                throw .refused("the entry would be dated \(t), more than \(Self.maxClockSkew) s after this machine's clock (\(now)); check the clock")
            }
            var op = op
            if case .setRental(let d, 0, let u, let x) = op { op = .setRental(dataset: d, rentalID: state.nextRentalID, user: u, expires: x) }
            try state.check(op, actor: signer.address, time: t)
            let entry: Entry
            do { entry = try Entry(index: tree.size, time: t, previous: lastLeaf, operation: op, signer: signer) } catch { throw .io("signing failed: \(error)") }
            let body = entry.body
            let leaf = Merkle.leafHash(body)
            var w = Writer(); w.u32(UInt32(body.count)); w.raw(body); w.raw(leaf)
            let record = w.bytes
            var written = 0
            while written < record.count {
                let n = record.withUnsafeBytes { pwrite(fd, $0.baseAddress! + written, $0.count - written, off_t(offset + written)) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    let e = errno
                    _ = ftruncate(fd, off_t(offset))
                    throw .io("cannot append to \(path): \(String(cString: strerror(e)))\(e == ENOSPC ? "; free space and retry (nothing was recorded)" : "")")
                }
                written += n
            }
            guard fsync(fd) == 0 else {
                let e = errno
                _ = ftruncate(fd, off_t(offset))
                throw .io("cannot sync \(path): \(String(cString: strerror(e))); the entry was not recorded")
            }
            try state.apply(entry)
            tree.append(leafHash: leaf)
            recordOffsets.append(offset)
            lastLeaf = leaf
            offset += record.count
            return entry
        }
    }

    /// The current tree head (unsigned).
    public func checkpoint() -> Checkpoint { Checkpoint(origin: origin, size: tree.size, root: tree.root(size: tree.size)) }

    /// The entry at `index`, read back from the file.
    public func entry(_ index: UInt64) throws(LedgerError) -> Entry {
        guard index < tree.size else { throw .invalidArgument("the ledger has \(tree.size) entries; there is no entry \(index)") }
        let start = recordOffsets[Int(index)]
        let end = Int(index) + 1 < recordOffsets.count ? recordOffsets[Int(index) + 1] : offset
        var record = [UInt8](repeating: 0, count: end - start)
        guard record.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, $0.count, off_t(start)) }) == record.count else {
            throw .io("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        guard let (entry, _, _) = try Self.parseRecord(record, at: 0, index: index, fileOffset: start) else {
            throw .corrupt(entry: Int(index), offset: start, "it is no longer complete in the file")
        }
        return entry
    }

    // MARK: - Reading

    private func withLock<R>(_ body: () throws(LedgerError) -> R) throws(LedgerError) -> R {
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw .io("cannot lock \(path): \(String(cString: strerror(errno)))") }
        }
        defer { _ = flock(fd, LOCK_UN) }
        return try body()
    }

    private func fileSize() throws(LedgerError) -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io("cannot stat \(path): \(String(cString: strerror(errno)))") }
        return Int(st.st_size)
    }

    /// Reads and applies complete records after `offset`. An incomplete tail is left alone
    /// by readers (a writer may be mid-append) and dropped by a writer holding the lock.
    private func readNew(dropTornTail: Bool) throws(LedgerError) {
        if let poisoned { throw poisoned }
        do { try readNewUnchecked(dropTornTail: dropTornTail) } catch {
            poisoned = error
            throw error
        }
    }

    private func readNewUnchecked(dropTornTail: Bool) throws(LedgerError) {
        let size = try fileSize()
        guard size > offset else { return }
        var bytes = [UInt8](repeating: 0, count: size - offset)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
        guard n >= 0 else { throw .io("cannot read \(path): \(String(cString: strerror(errno)))") }
        // Short: a writer cut a torn tail between fstat and pread. Read what is there.
        if n < bytes.count { bytes.removeLast(bytes.count - n) }
        // Parse every complete record, check all signatures in parallel (recovering a
        // secp256k1 key is most of the cost of opening a ledger), then check and apply each
        // entry in order, so the first bad entry is the one reported.
        var records = [(entry: Entry, leaf: [UInt8], fileOffset: Int, end: Int)]()
        var at = 0, parseError: LedgerError?, torn = false
        while at < bytes.count {
            do {
                guard let (entry, leaf, length) = try Self.parseRecord(bytes, at: at, index: tree.size + UInt64(records.count), fileOffset: offset + at) else {
                    torn = true
                    break
                }
                records.append((entry, leaf, offset + at, at + length))
                at += length
            } catch {
                parseError = error
                break
            }
        }
        let signatureErrors = Self.verifySignatures(records.map(\.entry))
        for (k, r) in records.enumerated() {
            try check(r.entry, leaf: r.leaf, fileOffset: r.fileOffset, signatureError: signatureErrors[k])
            tree.append(leafHash: r.leaf)
            recordOffsets.append(r.fileOffset)
            lastLeaf = r.leaf
        }
        if let parseError { throw parseError }
        let consumed = records.last?.end ?? 0
        offset += consumed
        if torn && dropTornTail { try dropTail(Array(bytes[consumed...])) }
    }

    /// Each entry's signature check, spread over the cores; nil where it verified.
    static func verifySignatures(_ entries: [Entry]) -> [String?] {
        final class Results: @unchecked Sendable {
            var errors: [String?]
            init(_ n: Int) { errors = [String?](repeating: nil, count: n) }
        }
        let results = Results(entries.count)
        let chunk = 256
        let chunks = (entries.count + chunk - 1) / chunk
        results.errors.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let out = out
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                for i in (c * chunk)..<min(entries.count, (c + 1) * chunk) {
                    do throws(LedgerError) { try entries[i].verifySignature() } catch {
                        if case .corrupt(_, _, let why) = error { out[i] = why } else { out[i] = error.description }
                    }
                }
            }
        }
        return results.errors
    }

    /// Checks an entry in sequence: index, chain, signature, rules.
    private func check(_ entry: Entry, leaf: [UInt8], fileOffset: Int, signatureError: String?) throws(LedgerError) {
        let i = Int(tree.size)
        guard entry.index == tree.size else { throw .corrupt(entry: i, offset: fileOffset, "it says it is entry \(entry.index) (dropped or reordered entries?)") }
        guard entry.previous == lastLeaf else { throw .corrupt(entry: i, offset: fileOffset, "its previous-entry hash does not match the entry before it") }
        if let why = signatureError { throw .corrupt(entry: i, offset: fileOffset, why) }
        guard entry.time <= Self.now() + Self.maxClockSkew else {
            throw .corrupt(entry: i, offset: fileOffset, "it is dated \(entry.time), in the future of this machine's clock (\(Self.now())); a future-dated entry would block every later rental")
        }
        do { try state.apply(entry) } catch { throw .corrupt(entry: i, offset: fileOffset, "the rules refuse it: \(error)") }
    }

    /// One record at `at`: (entry, leaf hash, record length), or nil when the bytes end
    /// before the record does (an incomplete tail).
    static func parseRecord(_ bytes: [UInt8], at: Int, index: UInt64, fileOffset: Int) throws(LedgerError) -> (Entry, [UInt8], Int)? {
        guard bytes.count - at >= 4 else { return nil }
        let len = Int(bytes[at..<(at + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        // A tail of zeros is what a power cut can leave of an append: torn, not tampered.
        if len == 0 && bytes[at...].allSatisfy({ $0 == 0 }) { return nil }
        guard len >= minBody, len <= maxBody else {
            throw .corrupt(entry: Int(clamping: index), offset: fileOffset, "record length \(len) is impossible (\(minBody)–\(maxBody))")
        }
        guard bytes.count - at >= 4 + len + 32 else {
            // Shorter than its length says: torn by a crash mid-append — unless the bytes hold
            // a whole record whose length field was altered: some other length makes its stored
            // hash match (a torn append is a prefix of one record and never does). Every
            // possible length is tried, so a flip cannot pass complete entries off as torn.
            let tail = Array(bytes[at...])
            if tail.count >= 4 + minBody + 32 {
                for real in minBody...min(maxBody, tail.count - 36) where Merkle.leafHash(Array(tail[4..<(4 + real)])) == Array(tail[(4 + real)..<(4 + real + 32)]) {
                    throw .corrupt(entry: Int(clamping: index), offset: fileOffset, "its length field says \(len) bytes, but it holds a complete record of \(real) (altered)")
                }
            }
            return nil
        }
        let body = Array(bytes[(at + 4)..<(at + 4 + len)])
        let leaf = Merkle.leafHash(body)
        guard Array(bytes[(at + 4 + len)..<(at + 4 + len + 32)]) == leaf else {
            throw .corrupt(entry: Int(clamping: index), offset: fileOffset, "its stored hash does not match its bytes (altered)")
        }
        let entry: Entry
        do { entry = try Entry.decode(body) } catch { throw .corrupt(entry: Int(clamping: index), offset: fileOffset, "cannot be decoded: \(error)") }
        return (entry, leaf, 4 + len + 32)
    }

    /// Cuts the file back to `offset` (the end of the last complete record).
    private func dropTail(_ torn: [UInt8]) throws(LedgerError) {
        let keep = path + ".torn-\(offset)-\(Int(Date().timeIntervalSince1970))"
        if let f = fopen(keep, "wx") {
            _ = torn.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
            fclose(f)
        }
        guard ftruncate(fd, off_t(offset)) == 0, fsync(fd) == 0 else {
            throw .io("cannot drop the torn last entry of \(path): \(String(cString: strerror(errno)))")
        }
        logger.warning("dropped a torn last entry (a crash mid-append)", metadata: [
            "ledger": "\(path)", "entry": "\(tree.size)", "bytes": "\(torn.count)", "kept-in": "\(keep)",
        ])
    }

    // MARK: - Verification

    /// What `verify` found.
    public struct Report: Sendable {
        public let entries: UInt64
        public let checkpoint: Checkpoint
        /// Bytes at the end that are not a complete record (a torn append not yet dropped).
        public let incompleteTailBytes: Int
    }

    /// Replays the whole file from scratch: framing, hashes, chain, signatures, rules.
    /// Throws `.corrupt` naming the first bad entry. `expected`, if given, must be a
    /// checkpoint of this log that the file is consistent with (no entry dropped after it).
    public static func verify(path: String, against expected: Checkpoint? = nil) throws(LedgerError) -> Report {
        let ledger = try EmbeddedLedger(path: path, writable: false)
        var size = try ledger.fileSize()
        // An incomplete tail may be a writer mid-append: look again until it stops moving
        // (twice in a row, 0.2 s apart; at most 10 s on a ledger that never stops growing).
        var stuck = 0, rounds = 0
        while ledger.offset < size && stuck < 2 && rounds < 50 {
            let before = ledger.offset
            usleep(200_000)
            try ledger.refresh()
            size = try ledger.fileSize()
            stuck = ledger.offset == before ? stuck + 1 : 0
            rounds += 1
        }
        if let expected {
            guard expected.origin == ledger.origin else { throw .proof("the checkpoint is for \(expected.origin), this ledger is \(ledger.origin)") }
            guard expected.size <= ledger.count else {
                throw .proof("the checkpoint has \(expected.size) entries but the file only \(ledger.count): entries were dropped")
            }
            guard ledger.tree.root(size: expected.size) == expected.root else {
                throw .proof("the first \(expected.size) entries do not have the checkpoint's root: the log was rewritten")
            }
        }
        let report = Report(entries: ledger.count, checkpoint: ledger.checkpoint(), incompleteTailBytes: stuck >= 2 ? size - ledger.offset : 0)
        return report
    }

    static func syncDirectory(of path: String) {
        let dir = (path as NSString).deletingLastPathComponent
        let d = Glibc.open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if d >= 0 { _ = fsync(d); Glibc.close(d) }
    }
}

extension Writer {
    mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xff)) }
}
