// The one error type at the FUSE boundary: an errno, converted once, with its cause.
import Dataset
import Envelope
import ObjectStore
#if canImport(Glibc)
import Glibc
#endif

/// An errno plus the cause, for the log line written when it is converted. The cause
/// names object keys and hashes, never decrypted names or plaintext.
public struct FSError: Error, CustomStringConvertible, Sendable {
    public let errno: Int32
    public let cause: String
    public init(_ errno: Int32, _ cause: String) { self.errno = errno; self.cause = cause }
    public var description: String { "\(String(cString: strerror(errno))) (errno \(errno)): \(cause)" }
    /// Whether the cause deserves a warning in the log (integrity and I/O problems).
    public var isAlarming: Bool { errno == EIO || errno == ESTALE }
}

/// Types that know their errno (go-fuse's ToErrno, mountpoint-s3's From impls).
public protocol ErrnoConvertible: Error {
    var errnoValue: Int32 { get }
}

extension DatasetError: ErrnoConvertible {
    /// Authentication failure → EIO; a stale object → ESTALE; a missing path → ENOENT.
    public var errnoValue: Int32 {
        switch self {
        case .integrity: return EIO
        case .store(let e): return e.errnoValue
        case .noSuchPath: return ENOENT
        case .wrongKind: return ENOTDIR
        case .source: return EINVAL
        // In the filesystem, a file reference that does not open is a damaged dataset.
        case .invalidArgument: return EIO
        }
    }
}

extension ObjectStoreError: ErrnoConvertible {
    public var errnoValue: Int32 {
        switch code {
        // An object the authenticated tree names is gone: the store is damaged, not the path.
        case .notFound: return EIO
        case .preconditionFailed: return ESTALE
        case .permissionDenied: return EACCES
        // Refused credentials: the dataset cannot be read, as with any store failure.
        case .authentication: return EIO
        case .noSpace: return ENOSPC
        case .alreadyExists, .invalidKey, .invalidURL, .io: return EIO
        }
    }
}

extension FSError {
    /// The single conversion point from any error to an errno.
    public static func from(_ error: any Error) -> FSError {
        switch error {
        case let e as FSError: return e
        case let e as any ErrnoConvertible: return FSError(e.errnoValue, "\(e)")
        // Anything else below the FUSE boundary (a format or crypto-library failure) is a
        // damaged dataset to the reader.
        default: return FSError(EIO, "\(error)")
        }
    }
}
