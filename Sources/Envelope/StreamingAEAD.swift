// Streaming AEAD, wire-compatible with Google Tink's AES256_GCM_HKDF_* streaming AEAD
// (AesGcmHkdfStreaming: AES-256-GCM, HKDF-SHA256, 32-byte derived key, first segment
// offset 0). See docs/format.md §2 for the byte layout and test vectors.
import Synchronization

/// Parameters of one stream: the ciphertext segment size (tag included).
public struct StreamParameters: Hashable, Sendable {
    /// Header: 1 length byte, 32-byte salt, 7-byte nonce prefix.
    public static let headerLength = 40
    public static let saltLength = 32
    public static let noncePrefixLength = 7
    public static let tagLength = 16
    public static let keyLength = 32
    /// The smallest segment that carries at least one byte in the first segment.
    public static let minimumSegmentSize = headerLength + tagLength + 1
    /// The largest segment this implementation accepts (bounds per-read scratch memory).
    public static let maximumSegmentSize = 8 << 20
    /// The default, chosen by measurement: see docs/format.md §2.4.
    public static let defaultSegmentSize = 16 << 10

    /// Ciphertext bytes per segment, tag included (Tink's `ciphertext_segment_size`).
    public let segmentSize: Int

    public init(segmentSize: Int = StreamParameters.defaultSegmentSize) throws(EnvelopeError) {
        guard segmentSize >= Self.minimumSegmentSize, segmentSize <= Self.maximumSegmentSize else {
            throw .invalidArgument("segment size must be between \(Self.minimumSegmentSize) and \(Self.maximumSegmentSize) bytes, got \(segmentSize)")
        }
        self.segmentSize = segmentSize
    }

    public static let `default` = try! StreamParameters()

    /// Plaintext bytes in the first segment (it shares its space with the header).
    public var firstSegmentPlaintext: Int { segmentSize - Self.headerLength - Self.tagLength }
    /// Plaintext bytes in every later full segment.
    public var segmentPlaintext: Int { segmentSize - Self.tagLength }

    /// Number of segments of a stream of `plaintextSize` bytes (an empty stream has one).
    public func segmentCount(plaintextSize: Int64) -> Int64 {
        let p0 = Int64(firstSegmentPlaintext), p = Int64(segmentPlaintext)
        if plaintextSize <= p0 { return 1 }
        return 1 + (plaintextSize - p0 + p - 1) / p
    }

    /// Total ciphertext size (header, segments, tags) of `plaintextSize` bytes.
    public func ciphertextSize(plaintextSize: Int64) -> Int64 {
        Int64(Self.headerLength) + plaintextSize + Int64(Self.tagLength) * segmentCount(plaintextSize: plaintextSize)
    }

    /// The plaintext size that a well-formed stream of `ciphertextSize` bytes holds, or nil.
    public func plaintextSize(ciphertextSize c: Int64) -> Int64? {
        let s = Int64(segmentSize), h = Int64(Self.headerLength), t = Int64(Self.tagLength)
        guard c >= h + t, c <= Int64.max / 2 else { return nil }
        let n = (c + s - 1) / s
        let lastStart = n == 1 ? h : (n - 1) * s
        guard c - lastStart >= t else { return nil }
        // A non-first last segment is never empty in streams Tink writes; accept only what it writes.
        if n > 1 && c - lastStart == t { return nil }
        let pt = c - h - t * n
        return ciphertextSize(plaintextSize: pt) == c ? pt : nil
    }

    /// Index of the segment holding plaintext byte `offset`.
    public func segmentIndex(plaintextOffset offset: Int64) -> Int64 {
        let p0 = Int64(firstSegmentPlaintext)
        return offset < p0 ? 0 : 1 + (offset - p0) / Int64(segmentPlaintext)
    }

    /// Plaintext offset where segment `i` begins.
    public func plaintextStart(segment i: Int64) -> Int64 {
        i == 0 ? 0 : Int64(firstSegmentPlaintext) + (i - 1) * Int64(segmentPlaintext)
    }

    /// Ciphertext offset (from the start of the object) where segment `i` begins.
    public func ciphertextStart(segment i: Int64) -> Int64 {
        i == 0 ? Int64(Self.headerLength) : i * Int64(segmentSize)
    }

    /// The ciphertext bytes to fetch to decrypt `range` of a stream of `plaintextSize`
    /// bytes: whole segments only, never the header. Empty when `range` is empty.
    public func ciphertextRange(forPlaintext range: Range<Int64>, plaintextSize: Int64) -> Range<Int64> {
        let r = range.clamped(to: 0..<plaintextSize)
        guard !r.isEmpty else { return 0..<0 }
        let first = segmentIndex(plaintextOffset: r.lowerBound)
        let last = segmentIndex(plaintextOffset: r.upperBound - 1)
        let total = ciphertextSize(plaintextSize: plaintextSize)
        let end = min(total, ciphertextStart(segment: last + 1))
        return ciphertextStart(segment: first)..<end
    }
}

/// The 40-byte stream header: length byte 0x28, salt, nonce prefix.
public struct StreamHeader: Sendable, Equatable {
    public let salt: [UInt8]
    public let noncePrefix: [UInt8]

    public init(salt: [UInt8], noncePrefix: [UInt8]) throws(EnvelopeError) {
        guard salt.count == StreamParameters.saltLength, noncePrefix.count == StreamParameters.noncePrefixLength else {
            throw .invalidArgument("a stream header has a 32-byte salt and a 7-byte nonce prefix")
        }
        self.salt = salt
        self.noncePrefix = noncePrefix
    }

    /// A fresh random header.
    public static func random() throws -> StreamHeader {
        try StreamHeader(salt: Random.bytes(StreamParameters.saltLength), noncePrefix: Random.bytes(StreamParameters.noncePrefixLength))
    }

    /// Parses the first 40 bytes of an object.
    public init(parsing bytes: UnsafeRawBufferPointer) throws(EnvelopeError) {
        guard bytes.count >= StreamParameters.headerLength else {
            throw .malformed("stream header truncated: \(bytes.count) of \(StreamParameters.headerLength) bytes")
        }
        guard bytes[0] == UInt8(StreamParameters.headerLength) else {
            throw .malformed("stream header length byte is \(bytes[0]), expected \(StreamParameters.headerLength)")
        }
        salt = Array(bytes[1..<33])
        noncePrefix = Array(bytes[33..<40])
    }

    public var bytes: [UInt8] { [UInt8(StreamParameters.headerLength)] + salt + noncePrefix }

    func nonce(segment: Int64, last: Bool) -> SegmentNonce { SegmentNonce(prefix: noncePrefix, segment: segment, last: last) }
}

/// A segment's 12-byte nonce, on the stack: prefix ‖ uint32(index) ‖ last flag. Built for
/// every segment on the read path, so it must not allocate.
struct SegmentNonce {
    private var b = (UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0),
                     UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0))

    init(prefix p: [UInt8], segment: Int64, last: Bool) {
        let i = UInt32(truncatingIfNeeded: segment)
        b = (p[0], p[1], p[2], p[3], p[4], p[5], p[6],
             UInt8(i >> 24), UInt8(i >> 16 & 0xff), UInt8(i >> 8 & 0xff), UInt8(i & 0xff), last ? 1 : 0)
    }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: b, body)
    }
}

/// Derives the stream's AES key: HKDF-SHA256(ikm: key, salt: header salt, info: associated data).
func deriveStreamKey(_ key: SecureBytes, header: StreamHeader, associatedData: [UInt8]) throws -> SecureBytes {
    guard key.count >= StreamParameters.keyLength else {
        throw EnvelopeError.invalidArgument("a streaming key has at least 32 bytes, got \(key.count)")
    }
    return try header.salt.withUnsafeBytes { salt in
        try associatedData.withUnsafeBytes { info in
            try HKDF.deriveKey(ikm: key, salt: salt, info: info, length: StreamParameters.keyLength)
        }
    }
}

/// Encrypts one stream segment by segment. Single use, one thread.
///
/// Segment sizes follow Tink: the first segment carries `firstSegmentPlaintext` bytes,
/// later ones `segmentPlaintext`, the last one 1...that (0 only for an empty stream).
public final class StreamEncryptor {
    public let parameters: StreamParameters
    public let header: StreamHeader
    private let gcm: GCMContext
    private var nextSegment: Int64 = 0
    private var finished = false

    /// - Parameters:
    ///   - key: the stream key (Tink's key value, at least 32 bytes; cce4 uses the dataset key).
    ///   - associatedData: bound into the derived key; decryption needs the same bytes.
    ///   - header: nil for a fresh random salt and nonce prefix. Pass one only to make test
    ///     vectors: reusing a header under the same key and associated data reuses nonces.
    public init(key: SecureBytes, associatedData: [UInt8], parameters: StreamParameters = .default, header: StreamHeader? = nil) throws {
        self.parameters = parameters
        self.header = try header ?? StreamHeader.random()
        let derived = try deriveStreamKey(key, header: self.header, associatedData: associatedData)
        self.gcm = try GCMContext(key: derived, sealing: true)
    }

    /// Plaintext bytes the next segment must hold unless it is the last.
    public var nextSegmentPlaintext: Int {
        nextSegment == 0 ? parameters.firstSegmentPlaintext : parameters.segmentPlaintext
    }

    /// Seals the next segment, appending its ciphertext and tag to `out`.
    public func sealSegment(_ plaintext: UnsafeRawBufferPointer, isLast: Bool, appendingTo out: inout [UInt8]) throws {
        guard !finished else { throw EnvelopeError.invalidArgument("stream already finished") }
        let expected = nextSegmentPlaintext
        if isLast {
            guard plaintext.count <= expected, plaintext.count > 0 || nextSegment == 0 else {
                throw EnvelopeError.invalidArgument("last segment holds 1...\(expected) bytes, got \(plaintext.count)")
            }
        } else {
            guard plaintext.count == expected else {
                throw EnvelopeError.invalidArgument("segment \(nextSegment) holds \(expected) bytes, got \(plaintext.count)")
            }
        }
        guard nextSegment < Int64(UInt32.max) else { throw EnvelopeError.invalidArgument("stream too long: 2^32 segments") }
        let nonce = header.nonce(segment: nextSegment, last: isLast)
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: plaintext.count + StreamParameters.tagLength))
        try out.withUnsafeMutableBytes { buf in
            try nonce.withUnsafeBytes { n in
                try gcm.seal(nonce: n, input: plaintext, out: UnsafeMutableRawBufferPointer(rebasing: buf[start...]))
            }
        }
        nextSegment += 1
        if isLast { finished = true }
    }

    /// Encrypts a whole plaintext into one ciphertext (header included).
    public static func encrypt(_ plaintext: [UInt8], key: SecureBytes, associatedData: [UInt8],
                               parameters: StreamParameters = .default, header: StreamHeader? = nil) throws -> [UInt8] {
        let enc = try StreamEncryptor(key: key, associatedData: associatedData, parameters: parameters, header: header)
        var out = enc.header.bytes
        out.reserveCapacity(Int(parameters.ciphertextSize(plaintextSize: Int64(plaintext.count))))
        try plaintext.withUnsafeBytes { pt in
            var pos = 0
            repeat {
                let n = min(enc.nextSegmentPlaintext, pt.count - pos)
                let last = pos + n == pt.count
                try enc.sealSegment(UnsafeRawBufferPointer(rebasing: pt[pos..<pos + n]), isLast: last, appendingTo: &out)
                pos += n
                if last { break }
            } while true
        }
        return out
    }
}

/// Buffers arbitrary writes into segments and hands finished ciphertext to a sink,
/// sealing a full buffer as non-last only once more data arrives (as Tink's writer does).
public final class StreamWriter {
    private let encryptor: StreamEncryptor
    private var buffer: [UInt8]
    private var pending = [UInt8]()
    private let sink: ([UInt8]) throws -> Void
    public private(set) var plaintextWritten: Int64 = 0
    private var closed = false

    public init(encryptor: StreamEncryptor, sink: @escaping ([UInt8]) throws -> Void) throws {
        self.encryptor = encryptor
        self.sink = sink
        self.buffer = []
        buffer.reserveCapacity(encryptor.parameters.segmentPlaintext)
        try sink(encryptor.header.bytes)
    }

    deinit { secureWipe(&buffer) }

    public func write(_ data: UnsafeRawBufferPointer) throws {
        precondition(!closed)
        var pos = 0
        while pos < data.count {
            let cap = encryptor.nextSegmentPlaintext
            if buffer.count == cap { try flush(isLast: false) }
            let n = min(cap - buffer.count, data.count - pos)
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: data[pos..<pos + n]))
            pos += n
        }
        plaintextWritten += Int64(data.count)
    }

    /// Seals the last segment and hands it to the sink.
    public func finish() throws {
        precondition(!closed)
        try flush(isLast: true)
        closed = true
    }

    private func flush(isLast: Bool) throws {
        pending.removeAll(keepingCapacity: true)
        try buffer.withUnsafeBytes { try encryptor.sealSegment($0, isLast: isLast, appendingTo: &pending) }
        secureWipe(&buffer)
        buffer.removeAll(keepingCapacity: true)
        try sink(pending)
    }
}

/// Decrypts any byte range of one stream, touching only the segments it spans and
/// writing plaintext straight into the caller's buffer.
///
/// Thread-safe: concurrent readers check out their own cipher context and scratch buffer
/// from a small pool (the lock covers only the pop and push, never crypto).
public final class StreamDecryptor: Sendable {
    public let parameters: StreamParameters
    public let header: StreamHeader
    /// The plaintext size the trusted metadata promises; the stream must match it exactly.
    public let plaintextSize: Int64
    private let derivedKey: SecureBytes
    private let pool = Mutex<[Worker]>([])

    /// A cipher context plus one segment of scratch, owned by one thread while checked out.
    private final class Worker: @unchecked Sendable {
        let gcm: GCMContext
        var scratch: [UInt8]
        init(key: SecureBytes, segmentSize: Int) throws {
            gcm = try GCMContext(key: key, sealing: false)
            scratch = [UInt8](repeating: 0, count: segmentSize)
        }
        deinit { secureWipe(&scratch) }
    }

    public init(key: SecureBytes, associatedData: [UInt8], header: StreamHeader, plaintextSize: Int64,
                parameters: StreamParameters = .default) throws {
        guard plaintextSize >= 0, plaintextSize <= Int64.max / 4 else { throw EnvelopeError.invalidArgument("plaintext size out of range") }
        guard parameters.segmentCount(plaintextSize: plaintextSize) <= Int64(UInt32.max) else {
            throw EnvelopeError.malformed("stream too long for 32-bit segment indices")
        }
        self.parameters = parameters
        self.header = header
        self.plaintextSize = plaintextSize
        self.derivedKey = try deriveStreamKey(key, header: header, associatedData: associatedData)
    }

    /// The total ciphertext size the object must have.
    public var ciphertextSize: Int64 { parameters.ciphertextSize(plaintextSize: plaintextSize) }

    /// The ciphertext to fetch for `range` (see `StreamParameters.ciphertextRange`).
    public func ciphertextRange(forPlaintext range: Range<Int64>) -> Range<Int64> {
        parameters.ciphertextRange(forPlaintext: range, plaintextSize: plaintextSize)
    }

    private func checkout() throws -> Worker {
        if let w = pool.withLock({ $0.popLast() }) { return w }
        return try Worker(key: derivedKey, segmentSize: parameters.segmentSize)
    }

    private func checkin(_ w: Worker) {
        pool.withLock { if $0.count < 8 { $0.append(w) } }
    }

    /// Decrypts plaintext `range` (clamped to the stream) into `out`, given `ciphertext`:
    /// exactly the bytes of `ciphertextRange(forPlaintext: range)`. Returns the number of
    /// plaintext bytes written (`out.count` must be at least the clamped range's length).
    ///
    /// Throws `.authenticationFailed` if any spanned segment fails to verify; `out` then
    /// holds no plaintext of the failed segment (it is wiped) and must not be used.
    @discardableResult
    public func decrypt(_ range: Range<Int64>, ciphertext: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) throws -> Int {
        let r = range.clamped(to: 0..<plaintextSize)
        if r.isEmpty {
            return 0
        }
        let ctRange = ciphertextRange(forPlaintext: r)
        guard ciphertext.count == ctRange.count else {
            throw EnvelopeError.authenticationFailed("ciphertext for the requested range is \(ciphertext.count) bytes, expected \(ctRange.count) (object truncated?)")
        }
        guard out.count >= r.count else { throw EnvelopeError.invalidArgument("output buffer too small") }
        let worker = try checkout()
        defer { checkin(worker) }
        let p = parameters
        let lastSegment = p.segmentCount(plaintextSize: plaintextSize) - 1
        var seg = p.segmentIndex(plaintextOffset: r.lowerBound)
        var written = 0
        while true {
            let ptStart = p.plaintextStart(segment: seg)
            let ptEnd = min(plaintextSize, seg == lastSegment ? plaintextSize : p.plaintextStart(segment: seg + 1))
            let ctStart = Int(p.ciphertextStart(segment: seg) - ctRange.lowerBound)
            let ctLen = Int(ptEnd - ptStart) + StreamParameters.tagLength
            let segCT = UnsafeRawBufferPointer(rebasing: ciphertext[ctStart..<ctStart + ctLen])
            let nonce = header.nonce(segment: seg, last: seg == lastSegment)
            let want = max(ptStart, r.lowerBound)..<min(ptEnd, r.upperBound)
            let ok: Bool
            if want.count == ptEnd - ptStart {
                // Whole segment wanted: decrypt straight into the caller's buffer.
                let dst = UnsafeMutableRawBufferPointer(rebasing: out[written..<written + want.count])
                ok = nonce.withUnsafeBytes { worker.gcm.open(nonce: $0, ciphertextAndTag: segCT, out: dst) }
            } else {
                let n = Int(ptEnd - ptStart)
                ok = worker.scratch.withUnsafeMutableBytes { scratch in
                    let dst = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<n])
                    guard nonce.withUnsafeBytes({ worker.gcm.open(nonce: $0, ciphertextAndTag: segCT, out: dst) }) else { return false }
                    let from = Int(want.lowerBound - ptStart)
                    UnsafeMutableRawBufferPointer(rebasing: out[written..<written + want.count])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: scratch[from..<from + want.count]))
                    // Not wiped per read (it cost 5% of a 4 KiB random read): the scratch is
                    // process memory like the caller's buffer, reused, and wiped when its
                    // worker is freed (Worker.deinit).
                    return true
                }
            }
            guard ok else {
                secureWipe(UnsafeMutableRawBufferPointer(rebasing: out[0..<written]))
                throw EnvelopeError.authenticationFailed("segment \(seg) of the stream did not verify")
            }
            written += want.count
            if want.upperBound >= r.upperBound { break }
            seg += 1
        }
        return written
    }

    /// Decrypts a whole ciphertext object (header included) into a new array.
    public static func decryptAll(_ object: [UInt8], key: SecureBytes, associatedData: [UInt8],
                                  parameters: StreamParameters = .default) throws -> [UInt8] {
        try object.withUnsafeBytes { obj in
            let header = try StreamHeader(parsing: obj)
            guard let size = parameters.plaintextSize(ciphertextSize: Int64(obj.count)) else {
                throw EnvelopeError.authenticationFailed("ciphertext length \(obj.count) is not a valid stream length")
            }
            let dec = try StreamDecryptor(key: key, associatedData: associatedData, header: header, plaintextSize: size, parameters: parameters)
            var out = [UInt8](repeating: 0, count: Int(size))
            let ct = dec.ciphertextRange(forPlaintext: 0..<size)
            if size == 0 {
                // An empty stream is one empty last segment: verify its tag anyway.
                try dec.verifyEmpty(UnsafeRawBufferPointer(rebasing: obj[StreamParameters.headerLength...]))
                return out
            }
            try out.withUnsafeMutableBytes { o in
                _ = try dec.decrypt(0..<size, ciphertext: UnsafeRawBufferPointer(rebasing: obj[Int(ct.lowerBound)..<Int(ct.upperBound)]), into: o)
            }
            return out
        }
    }

    /// Verifies the single, empty last segment of a zero-length stream (its tag alone).
    public func verifyEmpty(_ tag: UnsafeRawBufferPointer) throws {
        guard plaintextSize == 0, tag.count == StreamParameters.tagLength else {
            throw EnvelopeError.authenticationFailed("empty stream must end in exactly one 16-byte tag")
        }
        let worker = try checkout()
        defer { checkin(worker) }
        let nonce = header.nonce(segment: 0, last: true)
        var empty = [UInt8]()
        let ok = nonce.withUnsafeBytes { n in empty.withUnsafeMutableBytes { worker.gcm.open(nonce: n, ciphertextAndTag: tag, out: $0) } }
        guard ok else { throw EnvelopeError.authenticationFailed("segment 0 of the stream did not verify") }
    }
}
