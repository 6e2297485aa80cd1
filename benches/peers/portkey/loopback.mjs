// Preloaded into the Portkey gateway (node --import): it binds all interfaces by default, and
// benchmark traffic must stay on 127.0.0.1. Forces every listening socket onto loopback.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "object" && args[0] !== null) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  } else if (typeof args[0] === "number" || typeof args[0] === "string") {
    const callback = args.find((a) => typeof a === "function");
    args = callback ? [Number(args[0]), "127.0.0.1", callback] : [Number(args[0]), "127.0.0.1"];
  }
  return listen.apply(this, args);
};
