// Behaviour every ObjectStore backend promises, checked on each real backend.
import ObjectStore
import Testing

enum StoreContract {
    /// Put, ranged get, head, an empty object, overwrite (a new ETag), idempotent delete, and
    /// not-found errors that name the key.
    static func basics(_ store: any ObjectStore) throws {
        let k = { (s: String) throws -> ObjectKey in try ObjectKey(s) }
        let data = Array(0..<255).map(UInt8.init)
        let info = try store.put(k("ds/objects/ab/x"), data)
        #expect(info.size == 255)
        #expect(try store.get(k("ds/objects/ab/x")).bytes == data)
        let r = try store.get(k("ds/objects/ab/x"), range: 10..<20)
        #expect(r.bytes == Array(10..<20).map(UInt8.init) && r.objectSize == 255)
        #expect(try store.get(k("ds/objects/ab/x"), range: 250..<300).bytes.count == 5)
        #expect(try store.get(k("ds/objects/ab/x"), range: 255..<300).bytes.isEmpty)
        let h = try store.head(k("ds/objects/ab/x"))
        #expect(h.size == 255 && h.etag == info.etag)
        #expect(abs(h.modified.timeIntervalSinceNow) < 600)
        try store.put(k("empty"), [])
        #expect(try store.get(k("empty")).bytes.isEmpty)
        let info2 = try store.put(k("ds/objects/ab/x"), [1, 2, 3])
        #expect(info2.etag != info.etag)
        try store.delete(k("ds/objects/ab/x"))
        try store.delete(k("ds/objects/ab/x"))  // idempotent, as in S3
        let gone = try k("ds/objects/ab/x"), nope = try k("nope")
        do throws(ObjectStoreError) {
            _ = try store.head(gone)
            Issue.record("a deleted object is still there")
        } catch { #expect(error.code == .notFound) }
        do throws(ObjectStoreError) {
            _ = try store.get(nope)
            Issue.record("a missing object was read")
        } catch { #expect(error.code == .notFound && error.key == "nope") }
    }

    /// Create-if-absent refuses to replace an object and changes nothing.
    static func createIfAbsent(_ store: any ObjectStore) throws {
        let key = try ObjectKey("a")
        try store.put(key, [1], ifAbsent: true)
        do throws(ObjectStoreError) {
            try store.put(key, [2], ifAbsent: true)
            Issue.record("replaced an existing object")
        } catch {
            #expect(error.code == .alreadyExists)
        }
        #expect(try store.get(key).bytes == [1])
    }
}
