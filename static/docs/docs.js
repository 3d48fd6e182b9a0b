/* Starts Swagger UI on /docs. A file of its own: the page's CSP allows no inline script. */
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    domNode: root,
    deepLinking: true,
    // Never send the document to swagger.io's online validator (the default).
    validatorUrl: null
  });
})();
