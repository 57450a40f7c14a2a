// Starts Swagger UI on /docs. It only ever talks to this host: the document comes from
// the same origin, the online validator badge is off, and no query parameter can point
// the page at another document.
"use strict";

window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    domNode: root,
    validatorUrl: null,
    queryConfigEnabled: false,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    plugins: [],
    layout: "BaseLayout",
    docExpansion: "list",
    defaultModelsExpandDepth: 1,
    displayRequestDuration: true,
    persistAuthorization: false,
    withCredentials: false
  });
});
