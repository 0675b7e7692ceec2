// AMD SEV-SNP attestation reports (SEV Secure Nested Paging Firmware ABI Specification,
// Table "ATTESTATION_REPORT Structure"), verified against the VCEK/VLEK → ASK → ARK chain.
import Foundation

/// SNP TCB version components (REPORTED_TCB). Milan/Genoa layout: byte 0 boot loader,
/// 1 TEE, 6 SNP, 7 microcode; Turin: 0 FMC, 1 boot loader, 2 TEE, 3 SNP, 7 microcode.
public struct SNPTCB: Sendable, Equatable {
    public var bootloader: UInt8, tee: UInt8, snp: UInt8, microcode: UInt8, fmc: UInt8?
    public init(bootloader: UInt8, tee: UInt8, snp: UInt8, microcode: UInt8, fmc: UInt8? = nil) {
        self.bootloader = bootloader; self.tee = tee; self.snp = snp; self.microcode = microcode; self.fmc = fmc
    }
    init(raw: ArraySlice<UInt8>, turin: Bool) {
        let b = Array(raw)
        if turin { self.init(bootloader: b[1], tee: b[2], snp: b[3], microcode: b[7], fmc: b[0]) }
        else { self.init(bootloader: b[0], tee: b[1], snp: b[6], microcode: b[7]) }
    }
    /// Parses `Claims.tcb` for SNP: "bl=3 tee=0 snp=8 ucode=115" (and "fmc=…" on Turin).
    init?(claim: String) {
        var d: [String: UInt8] = [:]
        for part in claim.split(separator: " ") {
            let kv = part.split(separator: "=")
            guard kv.count == 2, let v = UInt8(kv[1]) else { return nil }
            d[String(kv[0])] = v
        }
        guard let bl = d["bl"], let tee = d["tee"], let snp = d["snp"], let uc = d["ucode"] else { return nil }
        self.init(bootloader: bl, tee: tee, snp: snp, microcode: uc, fmc: d["fmc"])
    }
    var claim: String { (fmc.map { "fmc=\($0) " } ?? "") + "bl=\(bootloader) tee=\(tee) snp=\(snp) ucode=\(microcode)" }
    /// Every component at least the minimum's.
    public func meets(_ m: SNPTCB) -> Bool {
        bootloader >= m.bootloader && tee >= m.tee && snp >= m.snp && microcode >= m.microcode && (fmc ?? 0) >= (m.fmc ?? 0)
    }
}

/// A parsed SEV-SNP attestation report (exactly 0x4A0 bytes, little-endian fields).
public struct SNPReport: Sendable {
    public static let size = 0x4A0
    /// The signature covers bytes [0, signedLength).
    public static let signedLength = 0x2A0
    public let bytes: [UInt8]

    /// Checks the size only; every field is checked after the signature (so any change to the
    /// signed bytes is reported as a signature failure).
    public init(_ bytes: [UInt8]) throws(AttestationError) {
        guard bytes.count == SNPReport.size else { throw .format("an SEV-SNP report is \(SNPReport.size) bytes, not \(bytes.count)") }
        self.bytes = bytes
    }

    private func u32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[o + $1]) << (8 * $1) } }
    private func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[o + $1]) << (8 * $1) } }
    public var version: UInt32 { u32(0x00) }
    public var guestSVN: UInt32 { u32(0x04) }
    public var policy: UInt64 { u64(0x08) }
    public var vmpl: UInt32 { u32(0x30) }
    public var signatureAlgorithm: UInt32 { u32(0x34) }
    /// 0: VCEK, 1: VLEK, 7: none (SIGNING_KEY, bits 4:2 of the word at 0x48).
    public var signingKey: UInt32 { (u32(0x48) >> 2) & 7 }
    public var reportData: [UInt8] { Array(bytes[0x50..<0x90]) }
    public var measurement: [UInt8] { Array(bytes[0x90..<0xC0]) }
    public var hostData: [UInt8] { Array(bytes[0xC0..<0xE0]) }
    public var reportedTCBRaw: ArraySlice<UInt8> { bytes[0x180..<0x188] }
    public var chipID: [UInt8] { Array(bytes[0x1A0..<0x1E0]) }
    /// POLICY bit 19: the hypervisor may debug the guest (read its memory).
    public var debug: Bool { policy & (1 << 19) != 0 }
}

public enum SNPVerifier {
    static let amd = "1.3.6.1.4.1.3704.1."

    /// Verifies `report` against the VCEK/VLEK and ASK/ARK of `collateral` as of `time`.
    public static func verify(_ report: SNPReport, collateral: SNPCollateral, at time: Date) throws(AttestationError) -> Claims {
        // 1. The endorsement key's chain to the pinned ARK of its product.
        guard let key = Certificate(der: collateral.endorsementKey) else { throw .failed(.certificateChain, "the VCEK/VLEK does not parse") }
        guard let chain = PEM.certificates(collateral.certChain), chain.count == 2 else {
            throw .failed(.certificateChain, "cert_chain.pem must hold the ASK (or ASVK) and the ARK")
        }
        let (ask, ark) = (chain[0], chain[1])
        guard let productExt = key.extensionValue(amd + "2"), let (name, _) = DER.read(productExt[...]), name.tag == 0x16,
              let productName = String(bytes: name.content, encoding: .ascii) else {
            throw .failed(.certificateChain, "the VCEK/VLEK names no product (extension \(amd)2)")
        }
        let product = String(productName.split(separator: "-").first ?? "")
        guard let pin = TrustAnchors.amdARK[product] else { throw .failed(.certificateChain, "no pinned ARK for product \(productName)") }
        guard ark.fingerprint == pin else { throw .failed(.certificateChain, "the ARK is not AMD's pinned ARK-\(product)") }
        // The key's kind from its name; the ASK (VCEKs) or ASVK (VLEKs) must be the matching one.
        let isVLEK: Bool
        switch (key.subjectCN, ask.subjectCN) {
        case ("SEV-VCEK"?, "SEV-\(product)"?): isVLEK = false
        case ("SEV-VLEK"?, "SEV-VLEK-\(product)"?): isVLEK = true
        default:
            throw .failed(.certificateChain, "the key (\(key.subjectCN ?? "?")) and its signer (\(ask.subjectCN ?? "?")) are not a \(product) VCEK/ASK or VLEK/ASVK pair")
        }
        var crls: [RevocationList] = []
        if let bytes = collateral.crl {
            guard let crl = RevocationList(bytes: bytes) else { throw .collateral("the AMD CRL does not parse") }
            crls.append(crl)
            // AMD's CRL is the ARK's: it can revoke the ASK, so it is checked on the ASK → ARK link.
            switch verifyChain(leaf: ask, intermediates: [], root: ark, crls: crls, crlMode: .leaf, at: time) {
            case .valid: break
            case let r where r.isRevocation:
                if case .invalid(_, let why) = r { throw .failed(.revocation, "ASK: \(why)") }
            case .invalid(_, let why): throw .failed(.certificateChain, "ASK: \(why)")
            }
        }
        if case .invalid(_, let why) = verifyChain(leaf: key, intermediates: [ask], root: ark, crls: [], crlMode: .none, at: time) {
            throw .failed(.certificateChain, "VCEK/VLEK chain: \(why)")
        }

        // 2. The report's signature: ECDSA P-384 / SHA-384 over [0, 0x2A0), r and s little-endian, 72 bytes each.
        let b = report.bytes
        let r = Array(b[0x2A0..<0x2E8].reversed()), s = Array(b[0x2E8..<0x330].reversed())
        guard key.verifyECDSA(hashBits: 384, message: b[0..<SNPReport.signedLength], r: r[...], s: s[...]) else {
            throw .failed(.reportSignature, "the report's signature does not verify with the VCEK/VLEK")
        }
        // Versions whose layout this parser knows (2: Milan/Genoa, 3: + CPUID fields, 5: Turin);
        // a future layout may move fields, so it is refused rather than misread.
        guard [2, 3, 5].contains(report.version) else { throw .format("report version \(report.version) is not one this verifier knows (2, 3, 5)") }
        guard report.signatureAlgorithm == 1 else { throw .format("signature algorithm \(report.signatureAlgorithm) is not ECDSA P-384 with SHA-384") }

        // 3. The key is the one this chip at this TCB should have signed with.
        guard report.signingKey == (isVLEK ? 1 : 0) else {
            throw .failed(.endorsementKey, "the report says it was signed by key kind \(report.signingKey), the certificate is a \(isVLEK ? "VLEK" : "VCEK")")
        }
        let turin = product == "Turin"
        let tcb = SNPTCB(raw: report.reportedTCBRaw, turin: turin)
        func ext(_ n: String) -> UInt64? { key.extensionValue(amd + n).flatMap { DER.read($0[...])?.0.unsigned } }
        var expected: [(String, UInt8)] = [("3.1", tcb.bootloader), ("3.2", tcb.tee), ("3.3", tcb.snp), ("3.8", tcb.microcode)]
        if let fmc = tcb.fmc { expected.append(("3.9", fmc)) }
        for (oid, value) in expected {
            guard let v = ext(oid) else { throw .failed(.endorsementKey, "the certificate lacks TCB extension \(amd)\(oid)") }
            guard v == UInt64(value) else {
                throw .failed(.endorsementKey, "the certificate's \(amd)\(oid) is \(v), REPORTED_TCB has \(value): a VCEK for another TCB")
            }
        }
        if !isVLEK {
            var hwid = key.extensionValue(amd + "4") ?? []
            if hwid.count == 66, hwid[0] == 0x04, hwid[1] == 0x40 { hwid = Array(hwid[2...]) }  // newer VCEKs wrap it in an OCTET STRING
            // Turin VCEKs carry an 8-byte HWID: the first 8 bytes of CHIP_ID (AMD's VCEK spec).
            let chip = turin ? Array(report.chipID.prefix(8)) : report.chipID
            guard hwid == chip else { throw .failed(.endorsementKey, "the VCEK is for another chip (HWID ≠ CHIP_ID)") }
        }

        return Claims(
            platform: .sevSNP, simulated: false, measurement: report.measurement, rtmrs: [], mrConfigID: nil,
            hostData: report.hostData, reportData: report.reportData, tdAttributes: nil, snpPolicy: report.policy,
            vmpl: report.vmpl, debug: report.debug, tcbStatus: .notApplicable, tcb: tcb.claim, advisoryIDs: [],
            revocationChecked: collateral.crl != nil, collateralNextUpdate: nil)
    }
}
