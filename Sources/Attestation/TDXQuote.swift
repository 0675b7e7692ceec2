// Intel TDX quotes, versions 4 and 5 (Intel TDX DCAP Quote Generation Library and Quote
// Verification Library API, appendix "Quote Format"). All integers little-endian.
//
//   header (48)   version u16, attestation key type u16 (2 = ECDSA-256-with-P-256),
//                 TEE type u32 (0x81 = TDX), QE SVN u16, PCE SVN u16, QE vendor ID (16), user data (20)
//   v4: TD report body (584)
//   v5: body type u16 (2 = TD report 1.0, 584 bytes; 3 = TD report 1.5, 648 bytes), body size u32, body
//   signature data length u32, then:
//     quote signature (64: r ‖ s, big-endian) over every byte before the length field
//     attestation key (64: X ‖ Y)
//     certification data: type u16 (6 = QE report), size u32, then
//       QE report (384, an SGX report body), QE report signature (64) by the PCK key,
//       QE auth data size u16 + data,
//       certification data: type u16 (5 = PCK chain, PEM), size u32, PEM PCK ‖ CA ‖ root
// Bytes after the signature data are not covered by any signature and are ignored (Intel's
// sample quote carries some).

/// A parsed TDX quote. Parsing checks structure only; `TDXVerifier` checks everything else.
public struct TDXQuote: Sendable {
    /// The most bytes accepted as a quote (real ones are ~5 KiB).
    public static let maximumSize = 64 * 1024
    public static let headerSize = 48
    public static let tdReport10Size = 584
    public static let tdReport15Size = 648
    public static let qeReportSize = 384

    public let bytes: [UInt8]
    public let version: UInt16
    /// The offset and size of the TD report body.
    public let bodyOffset: Int, bodySize: Int
    /// The quote signature covers bytes [0, signedLength).
    public let signedLength: Int
    let signature: Range<Int>, attestationKey: Range<Int>
    let qeReport: Range<Int>, qeReportSignature: Range<Int>, qeAuthData: Range<Int>
    let pckChain: Range<Int>

    /// Parses the structure; throws `.format` for anything truncated, oversized or of an unsupported kind.
    public init(_ bytes: [UInt8]) throws(AttestationError) {
        guard bytes.count <= TDXQuote.maximumSize else { throw .format("quote larger than \(TDXQuote.maximumSize) bytes") }
        var r = Reader(bytes)
        let version = try r.u16()
        guard version == 4 || version == 5 else { throw .format("TDX quote version \(version) (supported: 4, 5)") }
        guard try r.u16() == 2 else { throw .format("attestation key type is not ECDSA-256-with-P-256") }
        try r.skip(TDXQuote.headerSize - 4)
        if version == 4 {
            bodyOffset = TDXQuote.headerSize
            bodySize = TDXQuote.tdReport10Size
        } else {
            let type = try r.u16()
            let size = Int(try r.u32())
            switch (type, size) {
            case (2, TDXQuote.tdReport10Size), (3, TDXQuote.tdReport15Size): break
            default: throw .format("v5 body type \(type) of \(size) bytes is not a TD report")
            }
            bodyOffset = r.offset
            bodySize = size
        }
        try r.skip(bodySize)
        signedLength = r.offset
        let sigDataLength = Int(try r.u32())
        guard sigDataLength <= r.remaining else { throw .format("signature data length \(sigDataLength) exceeds the \(r.remaining) bytes left") }
        let sigEnd = r.offset + sigDataLength
        signature = try r.range(64)
        attestationKey = try r.range(64)
        guard try r.u16() == 6 else { throw .format("certification data is not a QE report (type 6)") }
        let certDataSize = Int(try r.u32())
        guard certDataSize <= sigEnd - r.offset else { throw .format("QE report certification data overruns the signature data") }
        qeReport = try r.range(TDXQuote.qeReportSize)
        qeReportSignature = try r.range(64)
        qeAuthData = try r.range(Int(try r.u16()))
        guard try r.u16() == 5 else { throw .format("inner certification data is not a PCK certificate chain (type 5)") }
        let chainSize = Int(try r.u32())
        pckChain = try r.range(chainSize)
        guard r.offset <= sigEnd else { throw .format("certification data overruns the signature data") }
        self.version = version
        self.bytes = bytes
    }

    private func field(_ offset: Int, _ count: Int) -> [UInt8] { Array(bytes[(bodyOffset + offset)..<(bodyOffset + offset + count)]) }

    /// Intel's QE vendor ID (939a7233-f79c-4ca9-940a-0db3957f0607).
    public static let intelQEVendorID: [UInt8] = [0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07]
    /// The QE vendor ID from the header (bytes 12..<28).
    public var qeVendorID: [UInt8] { Array(bytes[12..<28]) }
    /// TEE type from the header (0x81 for TDX).
    public var teeType: UInt32 { UInt32(bytes[4]) | UInt32(bytes[5]) << 8 | UInt32(bytes[6]) << 16 | UInt32(bytes[7]) << 24 }
    public var teeTCBSVN: [UInt8] { field(0, 16) }
    public var mrSeam: [UInt8] { field(16, 48) }
    public var mrSignerSeam: [UInt8] { field(64, 48) }
    public var seamAttributes: [UInt8] { field(112, 8) }
    public var tdAttributes: [UInt8] { field(120, 8) }
    public var xfam: [UInt8] { field(128, 8) }
    public var mrTD: [UInt8] { field(136, 48) }
    public var mrConfigID: [UInt8] { field(184, 48) }
    public var mrOwner: [UInt8] { field(232, 48) }
    public var mrOwnerConfig: [UInt8] { field(280, 48) }
    public var rtmrs: [[UInt8]] { (0..<4).map { field(328 + 48 * $0, 48) } }
    public var reportData: [UInt8] { field(520, 64) }
    /// TDATTRIBUTES bit 0: the TD is debuggable (its memory and state can be read by the host).
    public var debug: Bool { bytes[bodyOffset + 120] & 1 != 0 }
}

/// The SGX report body of the quoting enclave (Intel SGX SDK sgx_report_body_t).
struct QEReport {
    let b: ArraySlice<UInt8>
    init(_ b: ArraySlice<UInt8>) { self.b = b }
    private func at(_ o: Int, _ n: Int) -> [UInt8] { Array(b[(b.startIndex + o)..<(b.startIndex + o + n)]) }
    var miscSelect: [UInt8] { at(16, 4) }
    var attributes: [UInt8] { at(48, 16) }
    var mrSigner: [UInt8] { at(128, 32) }
    var isvProdID: UInt16 { UInt16(b[b.startIndex + 256]) | UInt16(b[b.startIndex + 257]) << 8 }
    var isvSVN: UInt16 { UInt16(b[b.startIndex + 258]) | UInt16(b[b.startIndex + 259]) << 8 }
    var reportData: [UInt8] { at(320, 64) }
}

/// A bounds-checked little-endian reader; every overrun is a `.format` error.
struct Reader {
    let bytes: [UInt8]
    private(set) var offset = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var remaining: Int { bytes.count - offset }

    mutating func range(_ n: Int) throws(AttestationError) -> Range<Int> {
        guard n >= 0, n <= remaining else { throw .format("truncated: need \(n) bytes at offset \(offset), have \(remaining)") }
        defer { offset += n }
        return offset..<(offset + n)
    }
    mutating func skip(_ n: Int) throws(AttestationError) { _ = try range(n) }
    mutating func u16() throws(AttestationError) -> UInt16 {
        let r = try range(2)
        return UInt16(bytes[r.lowerBound]) | UInt16(bytes[r.lowerBound + 1]) << 8
    }
    mutating func u32() throws(AttestationError) -> UInt32 {
        let r = try range(4)
        var v: UInt32 = 0
        for i in r.reversed() { v = v << 8 | UInt32(bytes[i]) }
        return v
    }
}
