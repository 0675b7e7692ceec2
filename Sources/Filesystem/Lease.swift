// The lease on a dataset mount (docs/key-release.md §Lease in cce4fs): a gate checked on every
// open and read (in memory: an atomic load and a clock read), the renewal state machine that
// keeps it alive, and the per-job access log. No network here: cce4fs drives the machine.
import Dataset
import Envelope
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Unix time in milliseconds (CLOCK_REALTIME: leases are in wall-clock seconds, like the ledger).
@inline(__always)
public func wallClockMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Gates every open and read on an unexpired lease. Once the lease lapses (expiry passes, or
/// the plane refuses a renewal) the gate stays shut: every open and read fails with EACCES and
/// the dataset keys are wiped in place. Thread-safe and lock-free on the check.
public final class LeaseGate: Sendable {
    private let expiresAtMs: Atomic<Int64>
    private let shut = Atomic<Bool>(false)
    private let keys: Mutex<[SecureBytes]>
    private let reasonText = Mutex<String?>(nil)
    private let lapseHandlers = Mutex<[@Sendable () -> Void]>([])
    private let clock: @Sendable () -> Int64
    private let logger: Logger

    /// - Parameters:
    ///   - expiresAt: the lease's expiry, Unix seconds.
    ///   - keys: the dataset keys to wipe on lapse (the same objects the readers use).
    ///   - clock: Unix milliseconds (tests pass their own).
    public init(expiresAt: UInt64, keys: [SecureBytes], clock: @escaping @Sendable () -> Int64 = { wallClockMilliseconds() },
                logger: Logger = Logger(label: "cce4fs.lease")) {
        expiresAtMs = Atomic(Int64(clamping: expiresAt) * 1000)
        self.keys = Mutex(keys)
        self.clock = clock
        self.logger = logger
    }

    /// Throws EACCES unless the lease is current. The hot path: one atomic load, one clock read.
    @inline(__always)
    public func check() throws(FSError) {
        if !shut.load(ordering: .acquiring), clock() < expiresAtMs.load(ordering: .acquiring) { return }
        try refuse()
    }

    @inline(never)
    private func refuse() throws(FSError) {
        if !shut.load(ordering: .acquiring) { lapse("the lease expired at \(expiresAtMs.load(ordering: .relaxed) / 1000) and was not renewed") }
        throw FSError(EACCES, "the dataset lease has lapsed: \(reason ?? "expired"); the keys are wiped, remount to continue")
    }

    /// Moves the expiry to a renewed lease's (Unix seconds). No effect once lapsed.
    public func renewed(expiresAt: UInt64) {
        guard !shut.load(ordering: .acquiring) else { return }
        expiresAtMs.store(Int64(clamping: expiresAt) * 1000, ordering: .releasing)
    }

    /// Shuts the gate for good, wipes the keys, logs why. Idempotent.
    public func lapse(_ why: String) {
        let first = reasonText.withLock { r -> Bool in
            guard r == nil else { return false }
            r = why
            return true
        }
        shut.store(true, ordering: .releasing)
        guard first else { return }
        let n = keys.withLock { k -> Int in
            for key in k { key.wipe() }
            defer { k.removeAll() }
            return k.count
        }
        logger.error("dataset lease lapsed: every open and read now fails with EACCES; \(n) key(s) wiped", metadata: ["reason": "\(why)"])
        for h in lapseHandlers.withLock({ h in defer { h.removeAll() }; return h }) { h() }
    }

    /// Runs `handler` once the gate lapses (at once if it already has), on the lapsing thread:
    /// it must not block (cce4fs starts a thread that drops the kernel's page cache).
    public func onLapse(_ handler: @escaping @Sendable () -> Void) {
        let already = lapseHandlers.withLock { h -> Bool in
            if shut.load(ordering: .acquiring) { return true }
            h.append(handler)
            return false
        }
        if already { handler() }
    }

    public var isLapsed: Bool { shut.load(ordering: .acquiring) }
    public var reason: String? { reasonText.withLock { $0 } }
    /// The current expiry, Unix seconds.
    public var expiresAt: UInt64 { UInt64(max(0, expiresAtMs.load(ordering: .acquiring) / 1000)) }
}

/// When to renew a lease, as a value-type state machine: events in, actions out, no I/O
/// (docs/key-release.md §Renewal). Renew at 2/3 of the lease's lifetime; on a transient
/// failure retry with exponential backoff (1 s, 2 s, 4 s … capped at `maximumBackoff`); on a
/// refusal, or once the expiry passes, lapse.
public struct LeaseRenewal: Sendable, Equatable {
    public enum Event: Sendable, Equatable {
        /// Time passed; `now` in Unix seconds.
        case tick(now: UInt64)
        /// The plane renewed the lease.
        case renewed(issuedAt: UInt64, expiresAt: UInt64, now: UInt64)
        /// A renewal failed: `refused` when the plane said no (no rental, lease expired…),
        /// otherwise a transport or server error worth retrying.
        case failed(now: UInt64, refused: Bool, reason: String)
    }

    public enum Action: Sendable, Equatable {
        /// Nothing to do until this time (Unix seconds), unless an event comes first.
        case wait(until: UInt64)
        /// Ask the plane for a renewal now, then report `.renewed` or `.failed`.
        case renew
        /// Shut the gate and wipe the keys (once); nothing follows.
        case lapse(reason: String)
        /// Already lapsed.
        case stop
    }

    public private(set) var issuedAt: UInt64
    public private(set) var expiresAt: UInt64
    public private(set) var failures = 0
    public private(set) var retryAt: UInt64 = 0
    public private(set) var lapsed = false
    public var maximumBackoff: UInt64 = 30

    public init(issuedAt: UInt64, expiresAt: UInt64) { self.issuedAt = issuedAt; self.expiresAt = expiresAt }

    /// 2/3 of the way from issue to expiry.
    public var renewAt: UInt64 { issuedAt + (expiresAt &- issuedAt) * 2 / 3 }

    public mutating func handle(_ event: Event) -> Action {
        guard !lapsed else { return .stop }
        switch event {
        case .tick(let now):
            if now >= expiresAt { return lapse("the lease expired at \(expiresAt) without a renewal (\(failures) failed attempt(s))") }
            let due = max(renewAt, retryAt)
            return now >= due ? .renew : .wait(until: min(due, expiresAt))
        case .renewed(let i, let e, let now):
            // At most one renewal a second, however short the lease.
            issuedAt = i; expiresAt = e; failures = 0; retryAt = now + 1
            if now >= e { return lapse("the renewed lease expires at \(e), already past") }
            return .wait(until: min(max(renewAt, retryAt), e))
        case .failed(let now, let refused, let reason):
            if refused { return lapse("the plane refused to renew the lease: \(reason)") }
            failures += 1
            let backoff = min(UInt64(1) << UInt64(min(failures - 1, 30)), maximumBackoff)
            retryAt = now + backoff
            if now >= expiresAt { return lapse("the lease expired at \(expiresAt) while renewals failed: \(reason)") }
            return .wait(until: min(retryAt, expiresAt))
        }
    }

    private mutating func lapse(_ why: String) -> Action {
        lapsed = true
        return .lapse(reason: why)
    }
}

/// The job's log of opens: one entry per open (the file's hash, bytes read through that
/// handle), in open order. Its Merkle root goes to the plane at unmount
/// (docs/key-release.md §Access log). Entry leaf bytes: u64 sequence ‖ 32-byte file hash ‖
/// u64 bytes read, big-endian.
public final class AccessLog: Sendable {
    struct State {
        /// (file id, bytes read) per open, in open order; `bytes` is filled in at release.
        var entries: [(file: [UInt8], bytes: UInt64)] = []
        /// Handles still open, with their entry's index: their counts are read live.
        var open: [ObjectIdentifier: (index: Int, handle: DatasetFile)] = [:]
    }
    // Lock order: taken alone, on open and release only; reads count in the handle
    // (`DatasetFile.bytesServed`, one relaxed atomic add), never under this lock.
    private let state = Mutex(State())
    public let datasetID: String

    public init(datasetID: String) { self.datasetID = datasetID }

    /// SHA-256(u8 len ‖ "cce4long/access-log/v1/file" ‖ u8 len ‖ dataset id ‖ file id): names
    /// the file within the dataset without its (decrypted) path.
    static func be64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64($0))) } }

    public static func fileHash(datasetID: String, fileID: [UInt8]) -> [UInt8] {
        let label = Array("cce4long/access-log/v1/file".utf8), d = Array(datasetID.utf8)
        return SHA256Digest.hash([UInt8(label.count)] + label + [UInt8(d.count)] + d + fileID).bytes
    }

    /// Records an open. The file id is kept as is and hashed in `leaves()`, off the open path.
    func opened(_ file: DatasetFile, fileID: [UInt8]) {
        state.withLock { s in
            s.open[ObjectIdentifier(file)] = (s.entries.count, file)
            s.entries.append((fileID, 0))
        }
    }

    func closed(_ file: DatasetFile) {
        state.withLock { s in
            guard let o = s.open.removeValue(forKey: ObjectIdentifier(file)) else { return }
            s.entries[o.index].bytes = o.handle.bytesServed.load(ordering: .relaxed)
        }
    }

    public var count: Int { state.withLock { $0.entries.count } }

    /// The entries' leaf bytes, in open order.
    public func leaves() -> [[UInt8]] {
        let entries = state.withLock { s in
            var e = s.entries
            for o in s.open.values { e[o.index].bytes = o.handle.bytesServed.load(ordering: .relaxed) }
            return e
        }
        return entries.enumerated().map { i, e in
                Self.be64(UInt64(i)) + Self.fileHash(datasetID: datasetID, fileID: e.file) + Self.be64(e.bytes)
        }
    }
}
