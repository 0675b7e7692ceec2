// A store wrapper for tests that watch or change one kind of call and pass the rest through.
import ObjectStore

/// Forwards every call to `inner`; subclasses override what they watch.
open class ForwardingObjectStore: ObjectStore, @unchecked Sendable {
    public let inner: any ObjectStore
    public init(_ inner: any ObjectStore) { self.inner = inner }

    open var url: String { inner.url }
    open func openReader(_ key: ObjectKey) throws(ObjectStoreError) -> any ObjectReader { try inner.openReader(key) }
    open func read(_ key: ObjectKey, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer, ifMatch: String?) throws(ObjectStoreError) -> ReadResult {
        try inner.read(key, at: offset, into: buffer, ifMatch: ifMatch)
    }
    open func head(_ key: ObjectKey) throws(ObjectStoreError) -> ObjectInfo { try inner.head(key) }
    open func makeWriter(_ key: ObjectKey, ifAbsent: Bool) throws(ObjectStoreError) -> ObjectWriter { try inner.makeWriter(key, ifAbsent: ifAbsent) }
    open func list(prefix: String, startAfter: ObjectKey?, maxKeys: Int) throws(ObjectStoreError) -> ObjectListPage {
        try inner.list(prefix: prefix, startAfter: startAfter, maxKeys: maxKeys)
    }
    open func delete(_ key: ObjectKey) throws(ObjectStoreError) { try inner.delete(key) }
    @discardableResult
    open func warm(_ objects: [(key: ObjectKey, size: Int64)]) -> Int { inner.warm(objects) }
}
