// What a client sent: each request's method, URL and body, as the gateway received them.
export function recordingFetch(sent) {
  return async (url, options = {}) => {
    sent.push({
      method: options.method || "GET",
      url: String(url),
      body: typeof options.body === "string" ? JSON.parse(options.body) : null,
    });
    return fetch(url, options);
  };
}

// The outcome of a run, on stdout for the test to read.
export function report(outcome) {
  process.stdout.write(JSON.stringify(outcome) + "\n");
}

export function errorOf(error) {
  return {
    name: error?.constructor?.name,
    message: String(error?.message ?? error),
    status: error?.statusCode ?? error?.response?.status,
    errors: error?.errors ?? error?.response?.errors ?? error?.result?.errors,
  };
}
