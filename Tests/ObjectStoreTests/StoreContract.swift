// Behaviour every ObjectStore backend promises, checked on each real backend.
import ObjectStore
import Testing

enum StoreContract {
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
