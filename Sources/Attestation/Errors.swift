// What can go wrong when producing or verifying evidence: one closed error type, and the
// names of the checks so a caller (and a test) can say precisely which one failed.

/// A verification step, in the order the verifiers run them (docs/attestation.md).
public enum Check: String, Sendable, CaseIterable {
    /// The evidence bytes: sizes, lengths, versions, key types.
    case format
    /// The certificate chain to the pinned root (signatures, validity at the verification time).
    case certificateChain
    /// CRLs: present, signed by the issuer, current at the verification time, not listing a certificate.
    case revocation
    /// TDX: the QE report's ECDSA signature by the PCK key.
    case qeReportSignature
    /// TDX: the QE report data = SHA-256(attestation key ‖ QE auth data) ‖ 32 zero bytes.
    case qeReportBinding
    /// TDX: the quote's ECDSA signature by the attestation key.
    case quoteSignature
    /// SEV-SNP / simulated: the report's signature.
    case reportSignature
    /// SEV-SNP: the VCEK/VLEK's extensions against REPORTED_TCB, CHIP_ID, the key kind.
    case endorsementKey
    /// Collateral files: present and well formed.
    case collateral
    /// TDX: the TCB signing certificate's chain to the pinned root.
    case tcbSigningChain
    /// TDX: Intel's signature over the TCB info.
    case tcbInfoSignature
    /// TDX: Intel's signature over the QE identity.
    case qeIdentitySignature
    /// The collateral's issueDate/nextUpdate window at the verification time.
    case collateralValidity
    /// TDX: TCB info for another platform (FMSPC, PCE ID) or another TEE.
    case collateralMismatch
    /// TDX: the QE report against the QE identity (MRSIGNER, ISVPRODID, masked MISCSELECT/ATTRIBUTES).
    case qeIdentity
    /// TDX: the TDX module (MRSIGNERSEAM, SEAMATTRIBUTES) against the TCB info.
    case tdxModule
}

/// Why evidence was not produced or did not verify.
public enum AttestationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Verification failed at `check`; `detail` says how, for a human.
    case failed(Check, String)
    /// A collateral file that verification needs is not there; the text says where to fetch it.
    case missingCollateral(String)
    /// The evidence provider (configfs-tsm) failed; nothing was produced.
    case provider(String)
    /// A bad argument (report data length, hex, policy value).
    case invalidArgument(String)

    /// The check that failed, if this is a verification failure.
    public var check: Check? {
        if case .failed(let c, _) = self { return c }
        return nil
    }

    public var description: String {
        switch self {
        case .failed(let c, let d): return "\(c.rawValue): \(d)"
        case .missingCollateral(let d): return "missing collateral: \(d)"
        case .provider(let d): return "evidence provider: \(d)"
        case .invalidArgument(let d): return d
        }
    }

    static func format(_ d: String) -> AttestationError { .failed(.format, d) }
    static func collateral(_ d: String) -> AttestationError { .failed(.collateral, d) }
}
