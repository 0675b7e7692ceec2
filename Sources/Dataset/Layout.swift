// Where a dataset's objects live in a store (docs/format.md §5).
import Envelope
import ObjectStore

/// Object naming inside a store. Every object key is opaque: random or a hash.
///
///     <dataset>/objects/<h0h1>/<64 hex>       file streams (random) and directories (SHA-256)
///     <dataset>/objects/<h0h1>/<64 hex>.<n>   part n of a file stored in parts
///     <dataset>/versions/<root hash hex>      informational version marker (JSON, unauthenticated)
public struct DatasetLayout: Sendable {
    public let datasetID: String

    public init(datasetID: String) throws(EnvelopeError) {
        try AssociatedData.validateDatasetID(datasetID)
        self.datasetID = datasetID
    }

    /// The key prefix of all the dataset's objects.
    public var prefix: String { datasetID + "/" }

    /// Object key (relative to the dataset) for a 32-byte name.
    public static func relativeKey(for name: [UInt8]) -> String {
        let hex = Hex.encode(name)
        return "objects/\(hex.prefix(2))/\(hex)"
    }

    /// A fresh random object key for a file stream.
    public static func randomFileKey() throws -> String { relativeKey(for: try Random.bytes(32)) }

    /// The store key of a relative key.
    public func storeKey(_ relative: String) throws(ObjectStoreError) -> ObjectKey { try ObjectKey(prefix + relative) }

    /// The store key of the directory object with this hash.
    public func directoryKey(_ hash: SHA256Digest) throws(ObjectStoreError) -> ObjectKey { try storeKey(Self.relativeKey(for: hash.bytes)) }

    public func versionKey(_ root: SHA256Digest) throws(ObjectStoreError) -> ObjectKey { try ObjectKey(prefix + "versions/" + root.hex) }
}
