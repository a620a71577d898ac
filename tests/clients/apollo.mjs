// Apollo Client against a cqrs-flow gateway: node apollo.mjs <mode> <http url> [command id]
//   get          a query with HttpLink({useGETForQueries: true})
//   persisted    a query through PersistedQueryLink (automatic persisted queries), twice
//   ws           a mutation over HTTP, then commandSettled over GraphQLWsLink (graphql-ws)
//   http-subscription   a subscription sent through HttpLink (not WebSocket)
import { createHash } from "node:crypto";
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { errorOf, recordingFetch, report } from "./record.mjs";

const [mode, uri] = process.argv.slice(2);
const sent = [];
const http = new HttpLink({ uri, fetch: recordingFetch(sent), useGETForQueries: mode === "get" });
const LIST = gql`query ListContacts { listContacts(count: 10) { id name } }`;
const ADD = gql`mutation AddContact($name: String!) { addContact(name: $name) { status command_id } }`;
const SETTLED = gql`subscription Settled($id: String!) { commandSettled(id: $id) { id state } }`;

function client(link) {
  return new ApolloClient({ link, cache: new InMemoryCache() });
}

async function main() {
  if (mode === "get") {
    const { data } = await client(http).query({ query: LIST });
    return { data, sent };
  }
  if (mode === "persisted") {
    const sha256 = (text) => createHash("sha256").update(text).digest("hex");
    const apollo = client(ApolloLink.from([new PersistedQueryLink({ sha256 }), http]));
    const first = await apollo.query({ query: LIST, fetchPolicy: "network-only" });
    const second = await apollo.query({ query: LIST, fetchPolicy: "network-only" });
    return { data: [first.data, second.data], sent };
  }
  if (mode === "ws") {
    const { data } = await client(http).mutate({ mutation: ADD, variables: { name: "Apollo WS" } });
    const ws = createClient({ url: uri.replace(/^http/, "ws"), webSocketImpl: WebSocket });
    const settled = await new Promise((resolve, reject) => {
      client(new GraphQLWsLink(ws))
        .subscribe({ query: SETTLED, variables: { id: data.addContact.command_id } })
        .subscribe({ next: resolve, error: reject });
    });
    await ws.dispose();
    return { data: { added: data, settled: settled.data }, sent };
  }
  if (mode === "http-subscription") {
    try {
      const result = await new Promise((resolve, reject) => {
        client(http)
          .subscribe({ query: SETTLED, variables: { id: "nope" } })
          .subscribe({ next: resolve, error: reject });
      });
      return { data: result.data, error: result.error ? errorOf(result.error) : null, sent };
    } catch (error) {
      return { error: errorOf(error), sent };
    }
  }
  throw new Error(`unknown mode ${mode}`);
}

report(await main());
