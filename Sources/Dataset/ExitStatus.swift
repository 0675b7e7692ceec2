// The exit statuses of the command-line tools (sysexits(3)), and the one mapping from the
// libraries' errors to them, shared by cce4 and cce4fs.
import Envelope
import ObjectStore

public enum ExitStatus {
    public static let usage: Int32 = 64, dataError: Int32 = 65, noInput: Int32 = 66, unavailable: Int32 = 69
    public static let cantCreate: Int32 = 73, ioError: Int32 = 74, noPermission: Int32 = 77

    /// 65 for integrity failures (tampering or the wrong key), 66 for missing inputs, 77 for
    /// permissions, 64 for bad arguments, 74 for I/O.
    public static func of(_ error: any Error) -> Int32 {
        switch error {
        case let e as KeyFileError:
            switch e.kind {
            case .missing, .unreadable: return noInput
            case .permissions: return noPermission
            case .malformed: return usage
            }
        case let e as DatasetError:
            switch e {
            case .integrity: return dataError
            case .store(let s): return of(s)
            case .noSuchPath, .source: return noInput
            case .wrongKind, .invalidArgument: return usage
            }
        case let e as ObjectStoreError:
            switch e.code {
            case .notFound: return noInput
            case .permissionDenied, .authentication: return noPermission
            case .invalidURL, .invalidKey: return usage
            case .noSpace, .io, .alreadyExists, .preconditionFailed: return ioError
            }
        case is TarError:
            return dataError
        case let e as EnvelopeError:
            return e.isIntegrityFailure ? dataError : usage
        default:
            return ioError
        }
    }
}
