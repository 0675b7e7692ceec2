import Envelope
import ObjectStore

/// Dataset-level errors. Messages name object keys and hashes, never decrypted names,
/// plaintext or keys; a path appears only when the caller typed it.
public enum DatasetError: Error, CustomStringConvertible, Sendable {
    /// An object failed an integrity check (tampered, truncated, swapped, rolled back, or
    /// the wrong key). `object` is the store key.
    case integrity(object: String, detail: String)
    /// The store failed (missing object, I/O, permissions).
    case store(ObjectStoreError)
    /// A path the caller asked for does not exist in the dataset.
    case noSuchPath(String)
    /// A path component is not a directory, or the target is the wrong kind.
    case wrongKind(String)
    /// The source tree cannot be packed (a special file, a file that changed while read).
    case source(String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .integrity(let o, let d): return "integrity check failed for object \(o): \(d)"
        case .store(let e): return "store error: \(e)"
        case .noSuchPath(let p): return "no such file or directory in the dataset: \(p)"
        case .wrongKind(let p): return p
        case .source(let m): return m
        case .invalidArgument(let m): return m
        }
    }

    /// Wraps an error from a lower layer, attributing integrity failures to `object`.
    static func wrap(_ error: any Error, object: ObjectKey?) -> DatasetError {
        let name = object?.rawValue ?? "(unknown)"
        switch error {
        case let e as DatasetError: return e
        case let e as EnvelopeError where e.isIntegrityFailure: return .integrity(object: name, detail: "\(e)")
        case let e as EnvelopeError: return .invalidArgument("\(e)")
        case let e as ObjectStoreError: return .store(e)
        default: return .integrity(object: name, detail: "\(error)")
        }
    }
}
