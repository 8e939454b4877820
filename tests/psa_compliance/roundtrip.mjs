// A round trip with the reference JS client @ipfs-shipyard/pinning-service-client@3: add, get, list,
// replace, delete; prints one JSON line with what it saw. Usage: node roundtrip.mjs ENDPOINT TOKEN CID1 CID2
import { Configuration, RemotePinningServiceClient, Status } from '@ipfs-shipyard/pinning-service-client'

const [endpoint, accessToken, cid1, cid2] = process.argv.slice(2)
const client = new RemotePinningServiceClient(new Configuration({ endpointUrl: endpoint, accessToken }))
const added = await client.pinsPost({ pin: { cid: cid1, name: 'roundtrip', meta: { app: 'rt' } } })
const got = await client.pinsRequestidGet({ requestid: added.requestid })
const listed = await client.pinsGet({ name: 'roundtrip', status: [Status.Queued, Status.Pinning, Status.Pinned, Status.Failed] })
const replaced = await client.pinsRequestidPost({ requestid: added.requestid, pin: { cid: cid2, name: 'roundtrip' } })
await client.pinsRequestidDelete({ requestid: replaced.requestid })
let afterDelete = 'found'
try {
  await client.pinsRequestidGet({ requestid: replaced.requestid })
} catch (err) {
  afterDelete = String(err?.response?.status ?? err?.status ?? err)
}
console.log(JSON.stringify({
  added: { requestid: added.requestid, status: added.status, cid: added.pin.cid, delegates: [...added.delegates] },
  got: { requestid: got.requestid, created: got.created.toISOString() },
  listed: { count: listed.count, ids: [...listed.results].map((p) => p.requestid) },
  replaced: { requestid: replaced.requestid, cid: replaced.pin.cid },
  afterDelete
}))
