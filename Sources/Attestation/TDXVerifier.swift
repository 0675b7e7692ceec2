// Verifies a TDX quote against Intel's PCS collateral at a given time. The order of the
// checks, and why, is in docs/attestation.md §TDX; each failure names its `Check`.
import Envelope
import Foundation

/// The SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1): the platform's TCB
/// and identity as Intel's PCS certified them.
struct PCKExtension {
    var sgxTCBComponents: [UInt64] = []
    var pceSVN: UInt64 = 0
    var pceID: [UInt8] = []
    var fmspc: [UInt8] = []

    static let oid = "1.2.840.113741.1.13.1"

    init?(_ cert: Certificate) {
        guard let ext = cert.extensionValue(PCKExtension.oid), let (seq, rest) = DER.read(ext[...]), rest.isEmpty,
              seq.tag == 0x30, let items = seq.children else { return nil }
        var comps = [UInt64?](repeating: nil, count: 16)
        var pce: UInt64?
        for item in items {
            guard let kv = item.children, kv.count == 2, let oid = kv[0].oid else { return nil }
            switch oid {
            case PCKExtension.oid + ".2":
                guard let tcb = kv[1].children else { return nil }
                for t in tcb {
                    guard let p = t.children, p.count == 2, let o = p[0].oid else { return nil }
                    let prefix = PCKExtension.oid + ".2."
                    guard o.hasPrefix(prefix), let n = Int(o.dropFirst(prefix.count)) else { continue }
                    if (1...16).contains(n) { comps[n - 1] = p[1].unsigned }
                    if n == 17 { pce = p[1].unsigned }
                }
            case PCKExtension.oid + ".3": pceID = Array(kv[1].content)
            case PCKExtension.oid + ".4": fmspc = Array(kv[1].content)
            default: continue
            }
        }
        guard let pce, comps.allSatisfy({ $0 != nil }), fmspc.count == 6, pceID.count == 2 else { return nil }
        sgxTCBComponents = comps.map { $0! }
        pceSVN = pce
    }
}

public enum TDXVerifier {
    /// Verifies `quote` with `collateral` as of `time`, and returns its claims; throws the
    /// first check that fails.
    public static func verify(_ quote: TDXQuote, collateral: TDXCollateral, at time: Date) throws(AttestationError) -> Claims {
        let q = quote.bytes
        // 1. PCK chain → pinned Intel SGX Root CA, with the CRLs, at `time`.
        guard let chain = PEM.certificates(q[quote.pckChain]), chain.count >= 2 else {
            throw .failed(.certificateChain, "the PCK certificate chain in the quote does not parse")
        }
        let root = chain[chain.count - 1]
        guard root.fingerprint == TrustAnchors.intelSGXRootCA else {
            throw .failed(.certificateChain, "the chain's root is not the pinned Intel SGX Root CA")
        }
        let pck = chain[0]
        var crls: [RevocationList] = []
        for (bytes, name) in [(collateral.pckCRL, "PCK CRL"), (collateral.rootCRL, "root CRL")] {
            guard let bytes else { continue }
            guard let crl = RevocationList(bytes: bytes) else { throw .collateral("the \(name) does not parse") }
            crls.append(crl)
        }
        let revocationChecked = collateral.pckCRL != nil && collateral.rootCRL != nil
        if collateral.pckCRL != nil || collateral.rootCRL != nil, !revocationChecked {
            throw .collateral("give both the PCK CRL and the root CRL, or neither")
        }
        switch verifyChain(leaf: pck, intermediates: Array(chain.dropFirst()), root: root, crls: crls,
                           crlMode: revocationChecked ? .all : .none, at: time) {
        case .valid: break
        case let r where r.isRevocation:
            if case .invalid(_, let why) = r { throw .failed(.revocation, "PCK chain: \(why)") }
        case .invalid(_, let why): throw .failed(.certificateChain, "PCK chain: \(why)")
        }
        // Only the PCK CAs issue PCK certificates (not, say, the TCB signing key's issuer).
        guard pck.subjectCN == "Intel SGX PCK Certificate",
              ["Intel SGX PCK Platform CA", "Intel SGX PCK Processor CA"].contains(pck.issuerCN ?? ""),
              let pckExt = PCKExtension(pck) else {
            throw .failed(.certificateChain, "the leaf is not a PCK certificate issued by a PCK CA (names, SGX extension)")
        }

        // 2. The QE report, signed by the PCK key.
        let sig = q[quote.qeReportSignature]
        guard pck.verifyECDSA(hashBits: 256, message: q[quote.qeReport], r: sig.prefix(32), s: sig.suffix(32)) else {
            throw .failed(.qeReportSignature, "the QE report's signature does not verify with the PCK key")
        }
        // 3. The QE vouches for the attestation key: report data = SHA-256(key ‖ auth data) ‖ zeros.
        let qe = QEReport(q[quote.qeReport])
        let expected = SHA256Digest.hash(Array(q[quote.attestationKey]) + Array(q[quote.qeAuthData])).bytes + [UInt8](repeating: 0, count: 32)
        guard qe.reportData == expected else {
            throw .failed(.qeReportBinding, "the QE report does not bind the attestation key")
        }
        // 4. The quote, signed by the attestation key.
        let qs = q[quote.signature]
        guard verifyECDSA(point: q[quote.attestationKey], hashBits: 256, message: q[0..<quote.signedLength], r: qs.prefix(32), s: qs.suffix(32)) else {
            throw .failed(.quoteSignature, "the quote's signature does not verify with the attestation key")
        }
        guard quote.teeType == 0x81 else { throw .format(String(format: "TEE type 0x%x is not TDX", quote.teeType)) }
        guard quote.qeVendorID == TDXQuote.intelQEVendorID else { throw .format("the quoting enclave is not Intel's (QE vendor ID \(Hex.encode(quote.qeVendorID)))") }

        // 5. Collateral: signed by Intel's TCB signing key, current at `time`, for this platform.
        let tcbInfo = try SignedJSON(collateral.tcbInfo, key: "tcbInfo", what: "TCB info")
        let qeID = try SignedJSON(collateral.qeIdentity, key: "enclaveIdentity", what: "QE identity")
        let signer = try tcbSigner(collateral: collateral, root: root, crls: crls, revocationChecked: revocationChecked, at: time)
        guard signer.verifyECDSA(hashBits: 256, message: tcbInfo.body[...], r: tcbInfo.signature.prefix(32), s: tcbInfo.signature.suffix(32)) else {
            throw .failed(.tcbInfoSignature, "Intel's signature over the TCB info does not verify")
        }
        guard signer.verifyECDSA(hashBits: 256, message: qeID.body[...], r: qeID.signature.prefix(32), s: qeID.signature.suffix(32)) else {
            throw .failed(.qeIdentitySignature, "Intel's signature over the QE identity does not verify")
        }
        let t = try tcbInfo.object(), e = try qeID.object()
        var nextUpdate: Date? = nil
        for (obj, name) in [(t, "TCB info"), (e, "QE identity")] {
            guard let issued = parseISO8601(obj["issueDate"]), let next = parseISO8601(obj["nextUpdate"]) else {
                throw .collateral("\(name) has no valid issueDate/nextUpdate")
            }
            guard issued <= time, time < next else {
                throw .failed(.collateralValidity, "\(name) is valid from \(issued) until \(next), not at \(time)")
            }
            nextUpdate = min(nextUpdate ?? next, next)
        }
        guard t["id"] as? String == "TDX", (t["version"] as? Int).map({ $0 >= 3 }) == true else {
            throw .failed(.collateralMismatch, "the TCB info is not TDX TCB info version 3")
        }
        guard e["id"] as? String == "TD_QE" else { throw .failed(.collateralMismatch, "the QE identity is not the TD quoting enclave's") }
        guard let fmspc = (t["fmspc"] as? String).flatMap(Hex.decode), fmspc == pckExt.fmspc else {
            throw .failed(.collateralMismatch, "the TCB info is for FMSPC \(t["fmspc"] ?? "?"), the PCK certificate's is \(Hex.encode(pckExt.fmspc))")
        }
        guard let pceID = (t["pceId"] as? String).flatMap(Hex.decode), pceID == pckExt.pceID else {
            throw .failed(.collateralMismatch, "the TCB info's PCE ID differs from the PCK certificate's")
        }

        // 6. The quoting enclave is Intel's TD QE, and its TCB level.
        let qeStatus = try qeIdentityStatus(qe, e)
        // 7. The TDX module, and the platform's TCB level.
        let (moduleStatus, moduleAdvisories) = try tdxModuleStatus(quote, t)
        let (platformStatus, advisories) = tcbLevel(quote, pckExt, t)

        return Claims(
            platform: .tdx, simulated: false, measurement: quote.mrTD, rtmrs: quote.rtmrs, mrConfigID: quote.mrConfigID,
            hostData: nil, reportData: quote.reportData, tdAttributes: quote.tdAttributes, snpPolicy: nil, vmpl: nil,
            debug: quote.debug, tcbStatus: max(platformStatus, qeStatus, moduleStatus), tcb: Hex.encode(quote.teeTCBSVN),
            advisoryIDs: Array(Set(advisories + moduleAdvisories)).sorted(), revocationChecked: revocationChecked,
            collateralNextUpdate: nextUpdate)
    }

    /// The TCB signing certificate: from the collateral's chain, else the built-in ones; the
    /// first that chains to the pinned root at `time` (with the root CRL when given).
    static func tcbSigner(collateral: TDXCollateral, root: Certificate, crls: [RevocationList], revocationChecked: Bool, at time: Date) throws(AttestationError) -> Certificate {
        var candidates: [Certificate] = []
        if let pem = collateral.tcbSigningChain {
            guard let c = PEM.certificates(pem) else { throw .collateral("tcb_signing_chain.pem does not parse") }
            candidates = [c[0]]
        } else {
            candidates = TrustAnchors.intelTCBSigning.compactMap { Data(base64Encoded: $0, options: .ignoreUnknownCharacters).flatMap { Certificate(der: Array($0)) } }
        }
        var last = "no TCB signing certificate"
        for c in candidates {
            guard c.subjectCN == "Intel SGX TCB Signing" else { last = "the certificate is not the Intel SGX TCB Signing certificate"; continue }
            switch verifyChain(leaf: c, intermediates: [], root: root, crls: crls, crlMode: revocationChecked ? .all : .none, at: time) {
            case .valid: return c
            case let r where r.isRevocation:
                if case .invalid(_, let why) = r { throw .failed(.revocation, "TCB signing chain: \(why)") }
            case .invalid(_, let why): last = why
            }
        }
        throw .failed(.tcbSigningChain, "TCB signing certificate: \(last)")
    }

    static func qeIdentityStatus(_ qe: QEReport, _ e: [String: Any]) throws(AttestationError) -> TCBStatus {
        func hex(_ k: String) -> [UInt8]? { (e[k] as? String).flatMap(Hex.decode) }
        guard let mrSigner = hex("mrsigner"), let misc = hex("miscselect"), let miscMask = hex("miscselectMask"),
              let attr = hex("attributes"), let attrMask = hex("attributesMask"), let prodID = e["isvprodid"] as? Int,
              let levels = e["tcbLevels"] as? [[String: Any]], misc.count == 4, miscMask.count == 4, attr.count == 16, attrMask.count == 16
        else { throw .collateral("the QE identity lacks mrsigner/miscselect/attributes/isvprodid/tcbLevels") }
        guard qe.mrSigner == mrSigner else { throw .failed(.qeIdentity, "the QE's MRSIGNER is not Intel's") }
        guard Int(qe.isvProdID) == prodID else { throw .failed(.qeIdentity, "the QE's ISVPRODID is \(qe.isvProdID), not \(prodID)") }
        guard zip(qe.miscSelect, miscMask).map({ $0 & $1 }) == misc else { throw .failed(.qeIdentity, "the QE's MISCSELECT does not match") }
        guard zip(qe.attributes, attrMask).map({ $0 & $1 }) == attr else { throw .failed(.qeIdentity, "the QE's ATTRIBUTES do not match") }
        for level in levels {
            guard let svn = (level["tcb"] as? [String: Any])?["isvsvn"] as? Int else { continue }
            if Int(qe.isvSVN) >= svn { return status(level["tcbStatus"]) }
        }
        return .notSupported
    }

    /// Checks the TDX module's signer and attributes; with TDX module identities (TCB info v3,
    /// major version TEE_TCB_SVN[1] > 0) also its TCB level.
    static func tdxModuleStatus(_ quote: TDXQuote, _ t: [String: Any]) throws(AttestationError) -> (TCBStatus, [String]) {
        let svn = quote.teeTCBSVN
        var module = t["tdxModule"] as? [String: Any]
        var levels: [[String: Any]]? = nil
        if svn[1] > 0 {
            let id = String(format: "TDX_%02X", svn[1])
            guard let m = (t["tdxModuleIdentities"] as? [[String: Any]])?.first(where: { $0["id"] as? String == id }) else {
                throw .failed(.tdxModule, "the TCB info has no identity for TDX module \(id)")
            }
            module = m
            levels = m["tcbLevels"] as? [[String: Any]]
        }
        guard let module, let signer = (module["mrsigner"] as? String).flatMap(Hex.decode),
              let attr = (module["attributes"] as? String).flatMap(Hex.decode), let mask = (module["attributesMask"] as? String).flatMap(Hex.decode),
              attr.count == 8, mask.count == 8 else { throw .collateral("the TCB info has no tdxModule mrsigner/attributes") }
        guard quote.mrSignerSeam == signer else { throw .failed(.tdxModule, "MRSIGNERSEAM is not the TDX module signer in the TCB info") }
        guard zip(quote.seamAttributes, mask).map({ $0 & $1 }) == attr else { throw .failed(.tdxModule, "SEAMATTRIBUTES do not match the TCB info") }
        guard let levels else { return (.upToDate, []) }
        for level in levels {
            guard let isvsvn = (level["tcb"] as? [String: Any])?["isvsvn"] as? Int else { continue }
            if Int(svn[0]) >= isvsvn { return (status(level["tcbStatus"]), level["advisoryIDs"] as? [String] ?? []) }
        }
        return (.notSupported, [])
    }

    /// The first TCB level whose SGX components, PCE SVN and TDX components the platform meets
    /// (go-tdx-guest testdata README steps 3-5; TDX components 0 and 1 are the module's and are
    /// skipped when a module identity applies).
    static func tcbLevel(_ quote: TDXQuote, _ pck: PCKExtension, _ t: [String: Any]) -> (TCBStatus, [String]) {
        let tee = quote.teeTCBSVN
        for level in (t["tcbLevels"] as? [[String: Any]]) ?? [] {
            guard let tcb = level["tcb"] as? [String: Any],
                  let sgx = (tcb["sgxtcbcomponents"] as? [[String: Any]])?.compactMap({ $0["svn"] as? Int }), sgx.count == 16,
                  let tdx = (tcb["tdxtcbcomponents"] as? [[String: Any]])?.compactMap({ $0["svn"] as? Int }), tdx.count == 16,
                  let pce = tcb["pcesvn"] as? Int else { continue }
            guard zip(pck.sgxTCBComponents, sgx).allSatisfy({ Int($0) >= $1 }), Int(pck.pceSVN) >= pce else { continue }
            let from = tee[1] > 0 ? 2 : 0
            guard (from..<16).allSatisfy({ Int(tee[$0]) >= tdx[$0] }) else { continue }
            // Step 4: TCB info for another module major version does not apply to this platform.
            guard tdx[1] == Int(tee[1]) else { return (.notSupported, []) }
            return (status(level["tcbStatus"]), level["advisoryIDs"] as? [String] ?? [])
        }
        return (.notSupported, [])
    }

    static func status(_ s: Any?) -> TCBStatus {
        (s as? String).flatMap(TCBStatus.init(rawValue:)) ?? .notSupported
    }
}
