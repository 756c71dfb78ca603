/**
 * This package's version, as the host reports it to plugins (Paperclip's
 * `instanceInfo.hostVersion`). Kept equal to `package.json` by a test, so that library code
 * needs no file access to know it.
 *
 * @internal
 */
export const version = "0.1.0"
