// Collateral: what verification needs besides the evidence, read from files so that
// verification runs offline. docs/attestation.md says how to fetch each file.
import Envelope
import Foundation

/// Intel PCS collateral for TDX quotes.
public struct TDXCollateral: Sendable {
    /// PCS `GET /tdx/certification/v4/tcb?fmspc=…` response body: {"tcbInfo":{…},"signature":"…"}.
    public var tcbInfo: [UInt8]
    /// PCS `GET /tdx/certification/v4/qe/identity` response body.
    public var qeIdentity: [UInt8]
    /// PCS `GET /sgx/certification/v4/pckcrl?ca=platform|processor&encoding=der` (the PCK's issuer's CRL).
    public var pckCRL: [UInt8]?
    /// The Intel SGX Root CA's CRL (https://certificates.trustedservices.intel.com/IntelSGXRootCA.der).
    public var rootCRL: [UInt8]?
    /// The `TCB-Info-Issuer-Chain` response header, URL-decoded (PEM: TCB signing cert ‖ root).
    /// Nil: the Intel SGX TCB Signing certificates built into the verifier are tried instead.
    public var tcbSigningChain: [UInt8]?

    public init(tcbInfo: [UInt8], qeIdentity: [UInt8], pckCRL: [UInt8]? = nil, rootCRL: [UInt8]? = nil, tcbSigningChain: [UInt8]? = nil) {
        self.tcbInfo = tcbInfo
        self.qeIdentity = qeIdentity
        self.pckCRL = pckCRL
        self.rootCRL = rootCRL
        self.tcbSigningChain = tcbSigningChain
    }

    public static let fileNames = (tcbInfo: "tcb_info.json", qeIdentity: "qe_identity.json", pckCRL: "pck_crl.der",
                                   rootCRL: "root_crl.der", tcbSigningChain: "tcb_signing_chain.pem")

    /// Reads tcb_info.json and qe_identity.json (required), pck_crl.der, root_crl.der and
    /// tcb_signing_chain.pem (optional) from `directory`.
    public static func load(directory: String) throws(AttestationError) -> TDXCollateral {
        let n = fileNames
        guard let tcb = try readOptional(directory, n.tcbInfo) else { throw .missingCollateral("\(directory)/\(n.tcbInfo) is missing") }
        guard let qe = try readOptional(directory, n.qeIdentity) else { throw .missingCollateral("\(directory)/\(n.qeIdentity) is missing") }
        return TDXCollateral(tcbInfo: tcb, qeIdentity: qe, pckCRL: try readOptional(directory, n.pckCRL),
                             rootCRL: try readOptional(directory, n.rootCRL), tcbSigningChain: try readOptional(directory, n.tcbSigningChain))
    }
}

/// AMD KDS collateral for SEV-SNP reports.
public struct SNPCollateral: Sendable {
    /// The VCEK (KDS `GET /vcek/v1/{product}/{hwid}?blSPL=…`) or VLEK, DER.
    public var endorsementKey: [UInt8]
    /// KDS `GET /vcek/v1/{product}/cert_chain` (or `/vlek/v1/…`): PEM ASK (or ASVK) ‖ ARK.
    public var certChain: [UInt8]
    /// KDS `GET /vcek/v1/{product}/crl` (DER, signed by the ARK); nil: revocation not checked.
    public var crl: [UInt8]?

    public init(endorsementKey: [UInt8], certChain: [UInt8], crl: [UInt8]? = nil) {
        self.endorsementKey = endorsementKey
        self.certChain = certChain
        self.crl = crl
    }

    public static let fileNames = (vcek: "vcek.der", vlek: "vlek.der", certChain: "cert_chain.pem", crl: "crl.der")

    /// Reads vcek.der (or vlek.der), cert_chain.pem and optionally crl.der from `directory`.
    public static func load(directory: String) throws(AttestationError) -> SNPCollateral {
        let n = fileNames
        var key = try readOptional(directory, n.vcek)
        if key == nil { key = try readOptional(directory, n.vlek) }
        guard let key else {
            throw .missingCollateral("\(directory) has neither \(n.vcek) nor \(n.vlek)")
        }
        guard let chain = try readOptional(directory, n.certChain) else { throw .missingCollateral("\(directory)/\(n.certChain) is missing") }
        return SNPCollateral(endorsementKey: key, certChain: chain, crl: try readOptional(directory, n.crl))
    }
}

/// The file's bytes, or nil when it does not exist; other read errors are `.collateral`.
func readOptional(_ directory: String, _ name: String) throws(AttestationError) -> [UInt8]? {
    let path = directory + "/" + name
    guard FileManager.default.fileExists(atPath: path) else { return nil }
    guard let data = FileManager.default.contents(atPath: path) else { throw .collateral("cannot read \(path)") }
    guard data.count <= 1 << 20 else { throw .collateral("\(path) is larger than 1 MiB") }
    return Array(data)
}

/// Trust anchors, pinned in the code (never read from collateral).
public enum TrustAnchors {
    /// SHA-256 of the DER Intel SGX Root CA certificate
    /// (https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.pem).
    public static let intelSGXRootCA: [UInt8] = Hex.decode("44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3")!

    /// SHA-256 of the DER AMD Root Keys per product (https://kdsintf.amd.com/vcek/v1/{product}/cert_chain).
    /// The VLEK chains end at the same ARKs.
    public static let amdARK: [String: [UInt8]] = [
        "Milan": Hex.decode("69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd")!,
        "Genoa": Hex.decode("4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1")!,
        "Turin": Hex.decode("1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a")!,
    ]

    /// The Intel SGX TCB Signing certificates (same key, reissued 2025-05-06 when the first
    /// expired), as PCS sends them in the TCB-Info-Issuer-Chain header. Used when the collateral
    /// has no tcb_signing_chain.pem; each must still chain to the pinned root at the
    /// verification time, and the root CRL applies.
    static let intelTCBSigning: [String] = [
        """
        MIICizCCAjKgAwIBAgIUfjiC1ftVKUpASY5FhAPpFJG99FUwCgYIKoZIzj0EAwIw
        aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv
        cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ
        BgNVBAYTAlVTMB4XDTE4MDUyMTEwNTAxMFoXDTI1MDUyMTEwNTAxMFowbDEeMBwG
        A1UEAwwVSW50ZWwgU0dYIFRDQiBTaWduaW5nMRowGAYDVQQKDBFJbnRlbCBDb3Jw
        b3JhdGlvbjEUMBIGA1UEBwwLU2FudGEgQ2xhcmExCzAJBgNVBAgMAkNBMQswCQYD
        VQQGEwJVUzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABENFG8xzydWRfK92bmGv
        P+mAh91PEyV7Jh6FGJd5ndE9aBH7R3E4A7ubrlh/zN3C4xvpoouGlirMba+W2lju
        ypajgbUwgbIwHwYDVR0jBBgwFoAUImUM1lqdNInzg7SVUr9QGzknBqwwUgYDVR0f
        BEswSTBHoEWgQ4ZBaHR0cHM6Ly9jZXJ0aWZpY2F0ZXMudHJ1c3RlZHNlcnZpY2Vz
        LmludGVsLmNvbS9JbnRlbFNHWFJvb3RDQS5kZXIwHQYDVR0OBBYEFH44gtX7VSlK
        QEmORYQD6RSRvfRVMA4GA1UdDwEB/wQEAwIGwDAMBgNVHRMBAf8EAjAAMAoGCCqG
        SM49BAMCA0cAMEQCIB9C8wOAN/ImxDtGACV246KcqjagZOR0kyctyBrsGGJVAiAj
        ftbrNGsGU8YH211dRiYNoPPu19Zp/ze8JmhujB0oBw==
        """,
        """
        MIICjTCCAjKgAwIBAgIUfjiC1ftVKUpASY5FhAPpFJG99FUwCgYIKoZIzj0EAwIw
        aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv
        cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ
        BgNVBAYTAlVTMB4XDTI1MDUwNjA5MjUwMFoXDTMyMDUwNjA5MjUwMFowbDEeMBwG
        A1UEAwwVSW50ZWwgU0dYIFRDQiBTaWduaW5nMRowGAYDVQQKDBFJbnRlbCBDb3Jw
        b3JhdGlvbjEUMBIGA1UEBwwLU2FudGEgQ2xhcmExCzAJBgNVBAgMAkNBMQswCQYD
        VQQGEwJVUzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABENFG8xzydWRfK92bmGv
        P+mAh91PEyV7Jh6FGJd5ndE9aBH7R3E4A7ubrlh/zN3C4xvpoouGlirMba+W2lju
        ypajgbUwgbIwHwYDVR0jBBgwFoAUImUM1lqdNInzg7SVUr9QGzknBqwwUgYDVR0f
        BEswSTBHoEWgQ4ZBaHR0cHM6Ly9jZXJ0aWZpY2F0ZXMudHJ1c3RlZHNlcnZpY2Vz
        LmludGVsLmNvbS9JbnRlbFNHWFJvb3RDQS5kZXIwHQYDVR0OBBYEFH44gtX7VSlK
        QEmORYQD6RSRvfRVMA4GA1UdDwEB/wQEAwIGwDAMBgNVHRMBAf8EAjAAMAoGCCqG
        SM49BAMCA0kAMEYCIQDdmmRuAo3qCO8TC1IoJMITAoOEw4dlgEBHzSz1TuMSTAIh
        AKVTqOkt59+co0O3m3hC+v5Fb00FjYWcgeu3EijOULo5
        """,
    ]
}
