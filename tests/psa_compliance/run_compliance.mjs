// Runs @ipfs-shipyard/pinning-service-compliance against one endpoint with the spec read from ./spec
// (the suite otherwise downloads it from GitHub at run time): requests for the spec's URL are answered by a
// local HTTP server serving our copy. Usage: node run_compliance.mjs ENDPOINT TOKEN REPORT_DIR
import { createRequire } from 'node:module'
import { readFileSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import http from 'node:http'

const here = dirname(fileURLToPath(import.meta.url))
const [endpoint, token] = process.argv.slice(2)
const spec = readFileSync(join(here, 'spec', 'ipfs-pinning-service-v1.0.0.yaml'))
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/yaml' })
  res.end(spec)
})
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
server.unref()
const port = server.address().port
const require = createRequire(import.meta.url)
const https = require('https')
const plainGet = http.get
https.get = (options, ...rest) => {
  const host = typeof options === 'string' ? new URL(options).hostname : (options.hostname ?? options.host)
  if (host !== 'raw.githubusercontent.com') throw new Error(`no network: refusing ${host}`)
  return plainGet({ hostname: '127.0.0.1', port, path: '/spec.yaml', timeout: options.timeout }, ...rest)
}
const suite = join(here, 'node_modules', '@ipfs-shipyard', 'pinning-service-compliance')
mkdirSync(join(suite, 'dist', 'docs'), { recursive: true }) // the suite writes its reports there
process.argv = [process.argv[0], join(suite, 'dist', 'src', 'index.js'), '-s', endpoint, token]
await import(join(suite, 'dist', 'src', 'index.js'))
