// urql's core client with its default exchanges' fetchExchange and default settings (queries
// within the URL length limit are sent as GET): node urql.mjs <http url>
import { Client, fetchExchange, gql } from "@urql/core";
import { recordingFetch, report } from "./record.mjs";

const [url] = process.argv.slice(2);
const sent = [];
const client = new Client({ url, exchanges: [fetchExchange], fetch: recordingFetch(sent) });
const result = await client
  .query(gql`query ListContacts { listContacts(count: 10) { id name } }`, {})
  .toPromise();
report({ data: result.data, error: result.error ? String(result.error) : null, sent });
