// graphql-request against a cqrs-flow gateway: node graphql-request.mjs <mode> <http url>
//   post | get   one query (POST, or GET with `method: "GET"`)
//   batch        batchRequests with two queries (the gateway refuses batches)
import { ClientError, GraphQLClient, batchRequests, gql } from "graphql-request";
import { errorOf, recordingFetch, report } from "./record.mjs";

const [mode, url] = process.argv.slice(2);
const sent = [];
const LIST = gql`query ListContacts { listContacts(count: 10) { id name } }`;

try {
  if (mode === "batch") {
    const data = await batchRequests(url, [{ document: LIST }, { document: LIST }]);
    report({ data, sent });
  } else {
    const method = mode === "get" ? "GET" : "POST";
    const client = new GraphQLClient(url, { method, fetch: recordingFetch(sent) });
    report({ data: await client.request(LIST), sent });
  }
} catch (error) {
  report({ error: errorOf(error), clientError: error instanceof ClientError, sent });
}
