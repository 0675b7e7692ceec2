// Key material in memory that is locked (never swapped) and wiped when released.
internal import COpenSSL
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Fixed-size secret bytes (keys, derived keys) in page-aligned memory that is
/// `mlock`ed, excluded from core dumps, and wiped with `OPENSSL_cleanse` over its whole
/// capacity in `deinit` (the shape of swift-crypto's `SecureBytes`).
///
/// Thread safety: the bytes are written once, in `init`, and only read afterwards, so
/// one value may be shared between threads.
///
/// The type never prints its contents: `description` and `debugDescription` say only
/// the length, so a key cannot reach a log or an error message by accident.
public final class SecureBytes: @unchecked Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    private let base: UnsafeMutableRawPointer
    private let capacity: Int
    /// The number of secret bytes.
    public let count: Int

    /// Why the memory could not be set aside for secrets.
    public struct AllocationError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Allocates `count` zeroed, locked bytes and lets `initialize` fill them.
    ///
    /// Fails closed: if the pages cannot be locked (`mlock`: RLIMIT_MEMLOCK too low), no
    /// key is ever placed in them.
    public init(count: Int, initialize: (UnsafeMutableRawBufferPointer) throws -> Void) throws {
        precondition(count >= 0)
        // Keys (32 bytes; derived per file opened) come from locked slots: no allocation,
        // mlock or munlock per key (each of those splits or merges a mapping under the
        // process's memory lock, which every thread then waits for).
        if count <= LockedSlots.slotSize {
            self.base = try LockedSlots.shared.take()
            self.capacity = LockedSlots.slotSize
            self.count = count
            try initialize(UnsafeMutableRawBufferPointer(start: base, count: count))
            return
        }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let capacity = max(page, (count + page - 1) / page * page)
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, page, capacity) == 0, let raw else {
            throw AllocationError(description: "cannot allocate \(capacity) bytes for key material")
        }
        memset(raw, 0, capacity)
        guard mlock(raw, capacity) == 0 else {
            let err = errno
            free(raw)
            throw AllocationError(description:
                "cannot lock key memory (mlock: \(String(cString: strerror(err)))); raise the locked-memory limit (ulimit -l) or run with CAP_IPC_LOCK")
        }
        #if os(Linux)
        _ = madvise(raw, capacity, MADV_DONTDUMP)
        #endif
        self.base = raw
        self.capacity = capacity
        self.count = count
        // If `initialize` throws, every stored property is already set, so Swift runs
        // `deinit`, which wipes and frees the pages: no cleanup here (it would double-free).
        try initialize(UnsafeMutableRawBufferPointer(start: raw, count: count))
    }

    /// Copies `bytes` into locked memory. The caller remains responsible for wiping its copy.
    public convenience init(copying bytes: UnsafeRawBufferPointer) throws {
        try self.init(count: bytes.count) { dst in
            if bytes.count > 0 { dst.copyMemory(from: bytes) }
        }
    }

    /// `count` fresh bytes from the CSPRNG.
    public static func random(count: Int) throws -> SecureBytes {
        try SecureBytes(count: count) { dst in try Random.fill(dst) }
    }

    deinit { Self.release(base, capacity) }

    private static func release(_ p: UnsafeMutableRawPointer, _ capacity: Int) {
        cce4_cleanse(p, capacity)
        if capacity == LockedSlots.slotSize { LockedSlots.shared.give(p); return }
        munlock(p, capacity)
        free(p)
    }

    /// Lends the secret bytes to `body`; they must not escape it.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    /// Overwrites the secret bytes with zeros now (OPENSSL_cleanse), without waiting for
    /// `deinit`: a lapsed lease wipes the dataset key while handles may still reference it.
    /// A reader racing the wipe sees a partly zeroed key, which fails authentication (EIO),
    /// never wrong plaintext; callers gate reads before they wipe (cce4fs's LeaseGate).
    public func wipe() { cce4_cleanse(base, capacity) }

    /// Whether every byte is zero (after `wipe`). Not constant time: for tests and logs.
    public var isZero: Bool { withUnsafeBytes { $0.allSatisfy { $0 == 0 } } }

    /// Constant-time equality (CRYPTO_memcmp); lengths are not secret.
    public func constantTimeEquals(_ other: SecureBytes) -> Bool {
        guard count == other.count else { return false }
        return cce4_ct_equal(base, other.base, count) == 1
    }

    public var description: String { "SecureBytes(\(count) bytes, redacted)" }
    public var debugDescription: String { description }
}

/// Small secrets' memory: 64-byte slots carved from 64 KiB arenas that are allocated, zeroed,
/// `mlock`ed and excluded from core dumps once. A slot is wiped (by `SecureBytes`) before it
/// returns to the free list; arenas are never unlocked or freed (they are bounded by the most
/// small secrets alive at once).
final class LockedSlots: @unchecked Sendable {
    static let slotSize = 64
    static let arenaSize = 64 << 10
    static let shared = LockedSlots()
    private var free: [UnsafeMutableRawPointer] = []
    private var lock = pthread_mutex_t()

    init() { pthread_mutex_init(&lock, nil) }

    func take() throws -> UnsafeMutableRawPointer {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if let p = free.popLast() { return p }
        var raw: UnsafeMutableRawPointer?
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard posix_memalign(&raw, page, Self.arenaSize) == 0, let raw else {
            throw SecureBytes.AllocationError(description: "cannot allocate \(Self.arenaSize) bytes for key material")
        }
        memset(raw, 0, Self.arenaSize)
        guard mlock(raw, Self.arenaSize) == 0 else {
            let err = errno
            Glibc.free(raw)
            throw SecureBytes.AllocationError(description:
                "cannot lock key memory (mlock: \(String(cString: strerror(err)))); raise the locked-memory limit (ulimit -l) or run with CAP_IPC_LOCK")
        }
        #if os(Linux)
        _ = madvise(raw, Self.arenaSize, MADV_DONTDUMP)
        #endif
        let n = Self.arenaSize / Self.slotSize
        free.reserveCapacity(free.count + n)
        for i in (1..<n).reversed() { free.append(raw + i * Self.slotSize) }
        return raw
    }

    /// Returns a wiped slot.
    func give(_ p: UnsafeMutableRawPointer) {
        pthread_mutex_lock(&lock)
        free.append(p)
        pthread_mutex_unlock(&lock)
    }
}

/// Wipes a plain buffer that held secrets or plaintext (OPENSSL_cleanse).
public func secureWipe(_ buffer: UnsafeMutableRawBufferPointer) {
    if let base = buffer.baseAddress, buffer.count > 0 { cce4_cleanse(base, buffer.count) }
}

/// Wipes an array's storage in place.
public func secureWipe(_ array: inout [UInt8]) {
    array.withUnsafeMutableBytes { secureWipe($0) }
}
