// `node --import warden-plugin/native --test`: runs a plugin's code and tests
// in Node, with the host's interfaces replaced by native-host.js.
import { register } from 'node:module';

register('./native-hooks.js', import.meta.url);
