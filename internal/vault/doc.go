// Package vault keeps named key vaults of secrets, encrypted at rest, and
// resolves secret URIs for tasks.
//
// Values are encrypted with AES-256-GCM under a master key kept in the keys
// directory (never in the database); the additional authenticated data binds
// every ciphertext to its vault, secret name and version, so rows cannot be
// swapped. Each SetSecret adds a version; reads return the newest unless a
// version is asked for.
//
// Access: vault management (create, delete, set-policy), setting and
// deleting secrets are the admin's. Reading a value needs the admin or a
// policy with the get permission for the caller's principal; listing needs
// the admin or list. A task run acts as its task identity's principal.
//
// Secret values never appear in errors or log lines: errors name the vault,
// the secret or its URI.
package vault
